"""The GAN family: losses and penalties against hand-computed values, its nets, and its runs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genlab import GAN, GANConfig, GenlabError, TrainConfig, fit, load_dataset, load_run
from genlab.cli import main
from genlab.models.gan import diff_augment, gradient_penalty, r1_penalty

FAST = dict(epochs=2, batch_size=500, val_fraction=0.0, device="cpu", monitor_every=8)


@pytest.fixture(scope="module")
def grid():
    return load_dataset("grid25")


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, grid):
    torch.manual_seed(0)
    model = GAN(GANConfig.for_data(grid.meta, hidden=(32, 32)))
    out = tmp_path_factory.mktemp("runs") / "gan"
    return fit(model, grid, TrainConfig(**FAST), out, progress=False)


def test_gradient_penalty_of_a_linear_critic_is_lambda_norm_minus_one_squared():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    critic = lambda x: x @ w  # noqa: E731
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(critic, real, fake, weight=10.0).item() == pytest.approx(10.0 * (5 - 1) ** 2)
    unit = lambda x: x @ (w / 5)  # noqa: E731
    assert gradient_penalty(unit, real, fake, weight=10.0).item() == pytest.approx(0.0, abs=1e-10)


def test_r1_penalty_of_a_linear_critic_is_half_gamma_norm_squared():
    w = torch.tensor([1.0, 2.0, 2.0])  # ||w||^2 = 9
    assert r1_penalty(lambda x: x @ w, torch.randn(8, 3), gamma=2.0).item() == pytest.approx(9.0)


def _losses(model, x):
    d = model.discriminator_loss(x)["loss"].item()
    g = model.generator_loss(x)["loss"].item()
    return d, g


def test_the_three_losses_match_their_formulas_for_a_constant_discriminator(grid):
    x = grid.train.x[:32]
    for loss, (d_expected, g_expected) in {
        "ns": (np.log1p(np.exp(-0.5)) + np.log1p(np.exp(0.5)), np.log1p(np.exp(-0.5))),  # softplus(-D) + softplus(D)
        "hinge": (max(0, 1 - 0.5) + max(0, 1 + 0.5), -0.5),
        "wgan_gp": (0.0, -0.5),  # D(fake) - D(real) = 0; a constant critic has zero gradient, penalty lambda
    }.items():
        torch.manual_seed(0)
        model = GAN(GANConfig.for_data(grid.meta, loss=loss, spectral_norm=False, hidden=(8,)))
        for p in model.discriminator.parameters():  # D(x) = 0.5 everywhere
            torch.nn.init.zeros_(p)
        with torch.no_grad():
            model.discriminator.head.bias.fill_(0.5)
        d, g = _losses(model, x)
        if loss == "wgan_gp":
            d_expected = 10.0  # the penalty of a zero gradient: lambda (0 - 1)^2
        assert d == pytest.approx(d_expected, rel=1e-5) and g == pytest.approx(g_expected, rel=1e-5)


def test_spectral_norm_keeps_discriminator_layers_at_unit_spectral_norm(grid):
    torch.manual_seed(0)
    model = GAN(GANConfig.for_data(grid.meta, hidden=(64, 64)))
    x = grid.train.x[:64]
    for _ in range(30):  # power iterations run in training forwards
        model.discriminator(x)
    for module in model.discriminator.modules():
        if isinstance(module, torch.nn.Linear):
            assert torch.linalg.matrix_norm(module.weight, ord=2).item() == pytest.approx(1.0, abs=0.02)


def test_diffaugment_translates_and_cuts_out_differentiably():
    torch.manual_seed(0)
    x = torch.ones(256, 1, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    zeros = (y == 0).float().mean().item()  # a 8x8 cutout (1/4, less where it leaves the image) plus shifted-in zeros
    assert 0.15 < zeros < 0.45
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_n_critic_updates_the_generator_every_nth_step(grid):
    torch.manual_seed(0)
    model = GAN(GANConfig.for_data(grid.meta, hidden=(16,), n_critic=3))
    run = fit(model, grid, TrainConfig(**{**FAST, "epochs": 1, "batch_size": 800}), progress=False)
    steps = run.history[-1]["step"]
    assert steps == 10 and model.ema_steps.item() == 4  # steps 0, 3, 6, 9


def test_a_gan_run_saves_loads_and_samples_identically_from_the_weight_average(gan_run):
    model = gan_run.model
    loaded = load_run(gan_run.path).model
    a = model.sample(50, generator=torch.Generator().manual_seed(3))
    b = loaded.sample(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    z = torch.randn(50, model.config.noise_dim, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, model.generator_ema.eval()(z))  # what sampling uses: the average ...
    assert not torch.allclose(a, model.generator.eval()(z))  # ... not the last generator


def test_a_gan_run_logs_both_losses_quality_and_a_picture_per_epoch(gan_run):
    rows = [json.loads(line) for line in (gan_run.path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert all("d_loss" in r and "g_loss" in r for r in epochs)
    monitors = [r for r in rows if r["kind"] == "monitor"]
    assert monitors and all(0 <= r["modes"] <= 25 and 0 <= r["high_quality"] <= 1 for r in monitors)
    assert sorted(p.name for p in (gan_run.path / "epochs").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    assert (gan_run.path / "samples.png").is_file() and not (gan_run.path / "reconstructions.png").exists()


def test_a_gan_with_a_validation_split_is_refused(grid):
    model = GAN(GANConfig.for_data(grid.meta, hidden=(8,)))
    with pytest.raises(GenlabError, match="val_fraction 0"):
        fit(model, grid, TrainConfig(epochs=1, val_fraction=0.1), progress=False)


def test_conditional_gan_needs_labels_and_generates_a_given_class(tmp_path):
    from genlab.data import DatasetMeta

    meta = DatasetMeta(name="x", kind="points", shape=(2,))
    with pytest.raises(GenlabError, match="labelled data"):
        GANConfig.for_data(meta, conditional=True)
    torch.manual_seed(0)
    digits = load_dataset("digits")
    model = GAN(GANConfig.for_data(digits.meta, conditional=True, hidden=(32,)))
    fit(model, digits, TrainConfig(**{**FAST, "epochs": 1}), progress=False)
    threes = model.sample(5, labels=3, generator=torch.Generator().manual_seed(0))
    sevens = model.sample(5, labels=7, generator=torch.Generator().manual_seed(0))
    assert threes.shape == (5, 1, 8, 8) and not torch.equal(threes, sevens)  # same noise, another class
    with pytest.raises(GenlabError, match="out of range"):
        model.sample(2, labels=10)


def test_cli_trains_samples_and_evaluates_a_gan(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["train", "gan", "--data", "grid25", "--out", str(out), "--epochs", "1", "--hidden", "16",
                 "--loss", "wgan_gp", "--n-critic", "2", "--batch-size", "500", "--monitor-every", "8",
                 "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["family"] == "gan" and config["model"]["loss"] == "wgan_gp" and config["train"]["val_fraction"] == 0
    assert main(["sample", str(out), "-n", "9", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (9, 2)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"modes", "high_quality", "reverse_kl", "fd", "fd_floor", "precision", "recall"} <= set(result)
    assert main(["report", str(out)]) == 0 and "Sample quality" in (out / "report.html").read_text()


def test_cli_conditional_gan_on_an_image_folder(tmp_path, capsys):
    rng = np.random.RandomState(0)
    for label, level in (("dark", 40), ("light", 210)):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    out = tmp_path / "cgan"
    assert main(["train", "gan", "--data", str(tmp_path / "images"), "--conditional", "--out", str(out),
                 "--epochs", "1", "--conv-width", "8", "--no-progress"]) == 0
    assert main(["sample", str(out), "-n", "4", "--class", "1", "--out", str(tmp_path / "light.png")]) == 0
    assert Image.open(tmp_path / "light.png").size[0] > 16


@pytest.mark.parametrize("argv, message", [
    (["train", "gan", "--data", "grid25", "--lr", "0.1"], "--lr-g and --lr-d"),
    (["train", "gan", "--data", "grid25", "--beta", "4"], "does not apply to the gan family"),
    (["train", "gan", "--data", "grid25", "--conditional", "--hidden", "8", "--batch-size", "800"], None),
    (["train", "gan", "--data", "grid25", "--diffaugment", "true"], "images only"),
    (["train", "gan", "--data", "grid25", "--ema", "1.5"], "ema must be in"),
])
def test_cli_gan_mistakes_are_one_line_errors(argv, message, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path / "r"), "--epochs", "1", "--no-progress"])
    if message is None:
        assert code == 0
        return
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err


def test_encoder_commands_refuse_a_gan_clearly(gan_run, capsys):
    for command in (["reconstruct", str(gan_run.path)], ["latent", str(gan_run.path)],
                    ["sample", str(gan_run.path), "--class", "1"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err


def test_the_mixture_recipe_sets_the_gan_config(tmp_path):
    out = tmp_path / "r"
    assert main(["train", "gan", "--data", "grid25", "--recipe", "gan-mixture", "--epochs", "1", "--hidden", "16",
                 "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["loss"] == "ns" and saved["model"]["r1"] == 0.1 and saved["model"]["hidden"] == [16]
    assert saved["train"]["lr_schedule"] == "cosine" and saved["train"]["batch_size"] == 256
