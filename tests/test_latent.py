"""Latent tools: a hand-built linear decoder gives the exact traversal; slerp stays on the sphere."""

import json

import pytest
import torch

from genlab import VAE, GenlabError, VAEConfig
from genlab.cli import main
from genlab.latent import interpolate, map_2d, slerp, traverse


def linear_decoder_vae():
    """Gaussian decoder with mean W z + b: decode_mean is exactly linear in z."""
    model = VAE(VAEConfig(input_shape=(1, 1, 3), latent_dim=2, hidden=(), net="mlp", likelihood="gaussian"))
    with torch.no_grad():
        model.decoder.net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
        model.decoder.net[0].bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
    return model


def test_traversal_of_a_linear_decoder_is_exact():
    model = linear_decoder_vae()
    code = torch.tensor([0.2, -0.4])
    images = traverse(model, code, dims=[1, 0], span=2.0, steps=3)
    assert images.shape == (6, 1, 1, 3)
    expected = []
    for d in (1, 0):
        for v in (-2.0, 0.0, 2.0):
            z = code.clone()
            z[d] = v
            expected.append(torch.tensor([z[0] + 0.5, 2 * z[1], z[0] - z[1] - 0.5]))
    assert torch.allclose(images.flatten(1), torch.stack(expected), atol=1e-6)


def test_slerp_of_orthogonal_unit_vectors_stays_on_the_sphere():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    middle = slerp(a, b, torch.tensor([0.5]))[0]
    assert middle.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(middle, torch.tensor([2**-0.5, 2**-0.5, 0.0]), atol=1e-6)
    ends = slerp(a, b, torch.tensor([0.0, 1.0]))
    assert torch.allclose(ends, torch.stack([a, b]), atol=1e-6)


def test_linear_interpolation_ends_at_the_two_codes():
    model = linear_decoder_vae()
    a, b = torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 3.0])
    images = interpolate(model, a, b, steps=5)
    assert torch.allclose(images[0], model.decode_mean(a[None])[0])
    assert torch.allclose(images[-1], model.decode_mean(b[None])[0])
    assert torch.allclose(images[2], model.decode_mean(((a + b) / 2)[None])[0], atol=1e-6)


def test_map_2d_and_bad_dimensions():
    codes = torch.randn(50, 5)
    assert map_2d(codes).shape == (50, 2)
    with pytest.raises(GenlabError, match="do not exist"):
        traverse(linear_decoder_vae(), torch.zeros(2), dims=[2])


def test_latent_commands_write_pictures(vae_run, tmp_path, capsys):
    run = str(vae_run.path)
    assert main(["traverse", run, "--top", "2", "--steps", "5", "--out", str(tmp_path / "t.png")]) == 0
    assert main(["traverse", run, "--dims", "0", "1", "--index", "3", "--out", str(tmp_path / "t2.png")]) == 0
    assert main(["interpolate", run, "--from", "1", "--to", "2", "--slerp", "--out", str(tmp_path / "i.png")]) == 0
    assert main(["latent", run, "--out", str(tmp_path / "l.png")]) == 0
    for name in ("t.png", "t2.png", "i.png", "l.png"):
        assert (tmp_path / name).stat().st_size > 500
    assert main(["interpolate", run, "--to", "360"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_evaluate_disentanglement_needs_known_factors(vae_run, capsys):
    assert main(["evaluate", str(vae_run.path), "--disentanglement", "--importance-samples", "2", "--no-progress"]) == 2
    assert "known generating factors" in capsys.readouterr().err


def test_disentanglement_on_shapes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "shapes", "--net", "mlp", "--hidden", "32", "--latent-dim", "5",
                 "--epochs", "1", "--batch-size", "256", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["evaluate", str(out), "--disentanglement", "--importance-samples", "2", "--json", "--no-progress"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert 0 <= result[key] <= 1


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["train", "vae", "--data", "digits", "--epochs", "1", "--tensorboard", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "pip install 'genlab[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written
