"""Known answers for the normalizing flow: log-determinants against autograd's Jacobian, exact inverses,
the identity at initialisation, a density that beats a fitted Gaussian, and a round trip through save/load."""

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import MultivariateNormal

from genlab import GenlabError, TrainConfig, fit, load_dataset, runs
from genlab.configs import build_config
from genlab.likelihoods import dequantize
from genlab.models.flow import Flow, FlowConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are tiny: two threads on two cores shared with any other process run ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TABLE = FlowConfig(input_shape=(3,), layers=4, hidden=(16,))
IMAGE = FlowConfig(input_shape=(1, 4, 4), layers=4, net="conv", conv_width=8)
SMALL_IMAGE_MLP = FlowConfig(input_shape=(1, 2, 2), layers=3, hidden=(8,))  # auto: an MLP below side 8
ONE_FEATURE = FlowConfig(input_shape=(1,), layers=3, hidden=(8,))


def perturbed(config: FlowConfig, dtype=torch.float64) -> Flow:
    """A flow whose every weight (zero-initialised heads and identity ActNorms too) is moved at random."""
    torch.manual_seed(0)
    model = Flow(config).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def inputs(config: FlowConfig, n: int, dtype=torch.float64) -> torch.Tensor:
    """Images inside (0, 1) (as dequantized pixels are), tables from N(0, 4)."""
    torch.manual_seed(1)
    if len(config.input_shape) == 3:
        return torch.rand(n, *config.input_shape, dtype=dtype) * 0.98 + 0.01
    return 2 * torch.randn(n, *config.input_shape, dtype=dtype)


@pytest.mark.parametrize("config", [TABLE, IMAGE, SMALL_IMAGE_MLP], ids=["mlp", "conv", "image_mlp"])
def test_log_det_equals_log_abs_det_of_autograds_jacobian(config):
    model = perturbed(config)
    x = inputs(config, 3)
    z, log_det = model.transform(x)
    assert not torch.allclose(z, x)  # the perturbed flow is not the identity
    for i in range(len(x)):
        J = jacobian(lambda v: model.transform(v.view(1, *x.shape[1:]))[0].flatten(), x[i].flatten())
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(J).logabsdet.item(), abs=1e-8)


@pytest.mark.parametrize("config", [TABLE, IMAGE, SMALL_IMAGE_MLP, ONE_FEATURE],
                         ids=["mlp", "conv", "image_mlp", "one_feature"])
def test_inverse_undoes_transform(config):
    model = perturbed(config, torch.float32)
    x = inputs(config, 64, torch.float32)
    with torch.no_grad():
        z, _ = model.transform(x)
        assert torch.allclose(model.inverse(z), x, atol=1e-5, rtol=0)
        assert torch.allclose(model.transform(model.inverse(z))[0], z, atol=1e-4, rtol=0)


def test_one_feature_couplings_are_learned_affine_maps():
    model = perturbed(ONE_FEATURE)
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    z, log_det = model.transform(x)
    slopes = (z[1:] - z[:-1]) / (x[1:] - x[:-1])  # the conditioners see zeros: one slope everywhere
    assert torch.allclose(slopes, slopes[0].expand_as(slopes))
    assert torch.allclose(log_det, slopes[0].log().expand_as(log_det))


def test_at_initialisation_a_table_flow_is_the_standard_normal():
    torch.manual_seed(0)
    model = Flow(FlowConfig(input_shape=(5,), layers=6, hidden=(16,)))
    x = 2 * torch.randn(32, 5)
    z, log_det = model.transform(x)
    assert torch.equal(log_det, torch.zeros(32))
    assert torch.equal(z.sort(1).values, x.sort(1).values)  # at most the fixed permutations
    closed_form = 0.5 * (x**2).sum(1) + 2.5 * math.log(2 * math.pi)
    assert torch.allclose(-model.log_likelihood(x), closed_form, atol=1e-5)
    assert torch.allclose(model.evaluation_terms(x, importance_samples=10)["nll_nats"], closed_form, atol=1e-5)


def test_trained_on_ring8_beats_a_fitted_gaussian():
    data = load_dataset("ring8")
    torch.manual_seed(0)
    model = Flow(FlowConfig.for_data(data.meta))
    run = fit(model, data, TrainConfig(epochs=3, batch_size=100, device="cpu", monitor_every=0), progress=False)
    train, test = data.train.x, data.test.x
    gaussian = MultivariateNormal(train.mean(0), torch.cov(train.T))  # the maximum-likelihood Gaussian
    gaussian_nll = -gaussian.log_prob(test).mean().item()
    with torch.no_grad():
        flow_nll = -model.log_likelihood(test).mean().item()
    assert flow_nll < gaussian_nll - 1.0, (flow_nll, gaussian_nll)  # 8 modes of std 0.01 vs one blob
    epochs = [row for row in run.history if row["kind"] == "epoch"]
    assert len(epochs) == 3 and all(math.isfinite(row["nll_nats"]) for row in epochs)
    assert run.history[-1]["best_val_loss_nats"] < gaussian_nll - 1.0  # model selection saw it too
    samples = model.sample(500, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (500, 2) and torch.isfinite(samples).all()
    assert (samples.norm(dim=1) - 1).abs().median() < 0.2  # on the ring of radius 1


def test_digits_fit_gives_finite_densities_and_samples_in_the_unit_square():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = Flow(FlowConfig.for_data(data.meta, layers=4))
    assert model.conv  # auto: conv conditioners from side 8
    fit(model, data, TrainConfig(epochs=1, batch_size=100, device="cpu", monitor_every=0), progress=False)
    with torch.no_grad():
        log_p = model.log_likelihood(model.dequantize(data.test.x))
    assert log_p.shape == (len(data.test.x),) and torch.isfinite(log_p).all()
    samples = model.sample(16, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (16, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    with pytest.raises(GenlabError, match=r"\[0, 1\]"):
        model.check_data(data.test.x * 2)
    with pytest.raises(GenlabError, match="shape"):
        model.check_data(data.test.x.flatten(1))


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    # no data-dependent initialisation: the weights a run starts from depend on the seed alone
    data = load_dataset("digits")

    def train(epochs: int, out, resume: bool = False):
        torch.manual_seed(0)
        model = Flow(FlowConfig.for_data(data.meta, layers=2, conv_width=8))
        config = TrainConfig(epochs=epochs, batch_size=200, device="cpu", monitor_every=0, epoch_pictures=False)
        return fit(model, data, config, out, resume=resume, progress=False).model.state_dict()

    whole = train(2, tmp_path / "whole")
    train(1, tmp_path / "halves")
    resumed = train(2, tmp_path / "halves", resume=True)
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_dequantization_is_the_evaluations():
    model = Flow(IMAGE)
    x = torch.randint(0, 256, (8, 1, 4, 4)) / 255
    torch.manual_seed(3)
    ours = model.dequantize(x)
    assert torch.equal(ours, dequantize(x, torch.Generator().manual_seed(3)))
    assert torch.equal(torch.floor(ours * 256), torch.round(x * 255))  # each value stays in its own bin
    assert torch.equal(Flow(TABLE).dequantize(x.flatten(1)[:, :3]), x.flatten(1)[:, :3])


@pytest.mark.parametrize("changes, field", [
    (dict(layers=0), "layers"),
    (dict(layers=65), "layers"),
    (dict(hidden=(64, 0)), "hidden"),
    (dict(net="x"), "net"),
    (dict(net="conv"), "net conv"),
    (dict(conv_width=0), "conv_width"),
    (dict(logit_alpha=0.5), "logit_alpha"),
    (dict(input_shape=(2, 3)), "input_shape"),
])
def test_config_mistakes_name_the_field(changes, field):
    with pytest.raises(GenlabError, match=field):
        FlowConfig(**{"input_shape": (4,), **changes})


def test_config_from_json_round_trips():
    config = build_config(FlowConfig, {"input_shape": [1, 8, 8], "hidden": [32], "logit_alpha": 0.1}, "flow")
    assert config.input_shape == (1, 8, 8) and config.hidden == (32,)  # JSON lists become tuples
    assert build_config(FlowConfig, config.to_dict(), "flow") == config


@pytest.mark.parametrize("config", [TABLE, IMAGE], ids=["mlp", "conv"])
def test_saved_and_loaded_model_gives_identical_log_likelihoods(config, tmp_path):
    model = perturbed(config, torch.float32)
    runs.save_model(tmp_path / "model.safetensors", model)
    tensors, metadata = runs.read_tensors(tmp_path / "model.safetensors", "model")
    assert metadata["family"] == "flow"
    torch.manual_seed(123)  # another start: every weight must come from the file
    loaded = Flow(config)
    runs.load_weights(loaded, tensors, tmp_path / "model.safetensors")
    x = inputs(config, 16, torch.float32)
    with torch.no_grad():
        assert torch.equal(loaded.log_likelihood(x), model.log_likelihood(x))


def test_every_tool_takes_a_flow_with_no_tool_knowing_its_name(tmp_path, capsys):
    """genlab train flow, then sample, evaluate (exact NLL: no importance samples), detect, report and resume:
    the tools ask what the model can do, and a flow declares a density."""
    import json

    from genlab.cli import main

    run = tmp_path / "flow"
    args = ["--data", "ring8", "--hidden", "16", "--batch-size", "500", "--val-fraction", "0", "--no-progress"]
    assert main(["train", "flow", *args, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["train", "flow", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert main(["sample", str(run), "-n", "7", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (7, 2)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["family"] == "flow" and math.isfinite(result["nll_nats"]) and "importance_samples" not in result
    assert main(["detect", str(run), "--json", "--no-progress"]) == 0
    detected = json.loads(capsys.readouterr().out)
    assert detected["score"] == "elbo" and detected["n_flagged"] > 0  # a density's auto score on points
    assert main(["report", str(run)]) == 0
    assert "nll_nats" in (run / "report.html").read_text()
    for tool in ("traverse", "latent"):  # tools that need codes say so in one line
        assert main([tool, str(run)]) == 2
        assert "needs an encoder" in capsys.readouterr().err


def test_a_flow_is_an_outlier_detector_that_finds_a_planted_outlier():
    from genlab import OutlierDetector

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    x[:, 1] = 2 * x[:, 0] + 0.1 * x[:, 1]  # a correlation the planted point breaks
    planted = np.array([[0.0, 3.0, 0.0, 0.0]], np.float32)  # unremarkable per column, not jointly
    det = OutlierDetector(model="flow", epochs=30, seed=0).fit(x)
    scores = det.score_samples(np.vstack([x[:50], planted]))
    assert scores[-1] < scores[:-1].min() and det.predict(planted)[0] == -1
