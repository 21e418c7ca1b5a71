import pytest
import torch

from genlab import VAE, TrainConfig, VAEConfig, fit, load_dataset

FAST = dict(epochs=2, batch_size=64, val_fraction=0.1, device="cpu")


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory, digits):
    """A small VAE trained on the digits for two epochs, written to a run directory."""
    torch.manual_seed(0)
    model = VAE(VAEConfig.for_data(digits.meta, latent_dim=4, hidden=(64,)))
    out = tmp_path_factory.mktemp("runs") / "vae"
    return fit(model, digits, TrainConfig(**FAST), out, progress=False)
