"""The autoencoder: its loss is the reconstruction error; it samples from a Gaussian fitted to its codes."""

import math

import pytest
import torch

from genlab import AE, AEConfig, TrainConfig, fit, load_dataset


def test_reconstruction_loss_by_hand():
    model = AE(AEConfig(input_shape=(2,), latent_dim=1, hidden=(), likelihood="gaussian", gaussian_scale=2.0))
    with torch.no_grad():
        model.decoder.net[0].weight.zero_()
        model.decoder.net[0].bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.tensor([[3.0, -1.0]])
    # -log N(x; mean, 2^2) summed over the two values: squared error / (2 * 4) + log 2 + log(2 pi) / 2 each
    expected = (3 - 1) ** 2 / 8 + 0 + 2 * (math.log(2.0) + 0.5 * math.log(2 * math.pi))
    assert model.loss(x)["loss"].item() == pytest.approx(expected, abs=1e-5)


def test_bernoulli_reconstruction_loss_is_binary_cross_entropy():
    torch.manual_seed(0)
    model = AE(AEConfig(input_shape=(1, 8, 8), latent_dim=3, hidden=(8,)))
    x = torch.rand(4, 1, 8, 8)
    logits = model.decode(model.encode(x))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 4
    assert model.loss(x)["loss"].item() == pytest.approx(bce.item(), rel=1e-5)


def test_training_reduces_reconstruction_loss_and_fits_the_code_gaussian():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = AE(AEConfig.for_data(data.meta, latent_dim=4, hidden=(64,)))
    before = model.reconstruction_loss(data.test.x).mean().item()
    fit(model, data, TrainConfig(epochs=5, batch_size=64), progress=False)
    after = model.reconstruction_loss(data.test.x).mean().item()
    assert after < before - 5
    codes = model.encode(data.train.x).detach().double()
    assert torch.allclose(model.code_mean.double(), codes.mean(0), atol=1e-4)
    cov = model.code_cholesky.double() @ model.code_cholesky.double().T
    assert torch.allclose(cov, torch.cov(codes.T), rtol=1e-3, atol=1e-4)
    samples = model.sample(16, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (16, 1, 8, 8)
