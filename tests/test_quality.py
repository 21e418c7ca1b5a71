"""Sample-quality metrics against closed forms and constructed sets."""

import math
import warnings

import numpy as np
import pytest
import torch

from genlab.data.embedded import MIXTURES, gaussian_mixture, grid25_centers
from genlab.metrics.quality import (
    domain_classifier,
    feature_fd,
    frechet_distance,
    label_coverage,
    mode_coverage,
    monitor,
    prdc,
    quality,
)


def test_frechet_distance_of_two_gaussians_is_the_closed_form():
    # commuting (diagonal) covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # a correlated (non-diagonal) covariance against itself: distance 0
    c1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_distance(mu1[:2], c1, mu1[:2], c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_from_samples_approaches_the_closed_form():
    rng = np.random.RandomState(0)
    x = rng.randn(200_000, 2) * [1.0, 2.0]
    y = rng.randn(200_000, 2) * [3.0, 1.0] + [1.0, 0.0]
    expected = 1 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert feature_fd(x, y) == pytest.approx(expected, rel=0.01)
    assert feature_fd(x[:5000], x[:5000]) == pytest.approx(0.0, abs=1e-6)


def test_precision_recall_density_coverage_on_identical_and_far_sets():
    x = np.random.RandomState(0).randn(1000, 8)
    same = prdc(x, x)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.15)
    far = prdc(x, x + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_precision_is_high_and_recall_low_for_samples_on_half_the_data():
    rng = np.random.RandomState(1)
    real = np.concatenate([rng.randn(500, 2), rng.randn(500, 2) + 20])
    fake = rng.randn(1000, 2)  # only the first cluster: realistic, but half the data missed
    result = prdc(real, fake)
    assert result["precision"] > 0.9 and 0.4 < result["recall"] < 0.6 and result["coverage"] < 0.6


def test_true_grid25_samples_cover_25_modes_at_the_3_sd_rate():
    centers, std = MIXTURES["grid25"]
    x, _ = gaussian_mixture(centers(), std, 2500, seed=1)
    result = mode_coverage(x, centers(), std)
    assert result["modes"] == 25
    # within 3 sd of the centre in 2-D: 1 - exp(-9/2) = 0.9889
    assert result["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert result["reverse_kl"] < 0.02


def test_samples_on_one_mode_score_one_mode_and_uniform_noise_games_the_mode_count():
    centers, std = grid25_centers(), 0.05
    one = np.full((2500, 2), 2.0) + 0.01 * np.random.RandomState(0).randn(2500, 2)
    result = mode_coverage(one, centers, std)
    assert result["modes"] == 1 and result["high_quality"] == 1.0
    assert result["reverse_kl"] == pytest.approx(math.log(25))
    noise = np.random.RandomState(0).uniform(-5, 5, (2500, 2))
    gamed = mode_coverage(noise, centers, std)
    assert gamed["modes"] >= 18 and gamed["high_quality"] < 0.05  # most modes, almost no good samples


def test_label_coverage_counts_classes_with_a_fair_share():
    labels = np.array([0] * 50 + [1] * 40 + [2] * 7 + [3] * 3)  # a quarter of a fair 1/4 share: 6.25%
    result = label_coverage(labels, 4)
    assert result["classes_covered"] == 3
    q = np.array([0.5, 0.4, 0.07, 0.03])
    assert result["class_kl"] == pytest.approx(float(np.sum(q * np.log(q * 4))))


def test_domain_classifier_is_trained_once_then_read_from_the_cache(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    net, accuracy = domain_classifier(digits)
    assert accuracy > 0.85
    files = list((tmp_path / "classifiers").glob("*.safetensors"))
    assert len(files) == 1
    again, accuracy_again = domain_classifier(digits)
    assert accuracy_again == accuracy
    x = digits.test.x[:20]
    assert torch.equal(net.features(x), again.features(x))


class _Replay(torch.nn.Module):
    """A 'model' whose samples are real data: quality must call it as good as real data."""

    def __init__(self, x):
        super().__init__()
        self.x = x

    def sample(self, n, generator=None):
        return self.x[torch.randint(len(self.x), (n,), generator=generator)]


def test_quality_of_real_data_is_near_the_floor(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    real = quality(_Replay(digits.train.x), digits)
    assert real["fd"] < 3 * real["fd_floor"] + 1e-3
    assert real["precision"] > 0.8 and real["recall"] > 0.8 and real["classes_covered"] == 10
    noise = quality(_Replay(torch.rand(500, 1, 8, 8)), digits)
    assert noise["fd"] > 10 * real["fd"]
    collapsed = quality(_Replay(digits.train.x[digits.train.y == 3]), digits)  # one class only
    assert collapsed["classes_covered"] == 1 and collapsed["fd"] > 5 * real["fd"]
    assert collapsed["recall"] < 0.4 and collapsed["coverage"] < 0.3 and collapsed["precision"] > 0.8


def test_monitor_reports_modes_on_mixtures(tmp_path):
    from genlab import load_dataset

    data = load_dataset("grid25")
    assert monitor(_Replay(data.train.x), data) == {"modes": 25, "high_quality": pytest.approx(0.989, abs=0.01)}


def test_cli_evaluate_quality_of_a_vae(vae_run, tmp_path, monkeypatch, capsys):
    import json

    from genlab.cli import main

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    assert main(["evaluate", str(vae_run.path), "--quality", "--json", "--no-progress",
                 "--importance-samples", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    keys = {"nll_nats", "fd", "fd_floor", "precision", "recall", "density", "coverage", "classes_covered"}
    assert keys <= set(result)
    assert result["features"] == "domain classifier" and result["fd"] >= 0


@pytest.mark.parametrize("test_size, measured", [(1, set()), (3, {"fd", "fd_floor"}),
                                                 (6, {"fd", "fd_floor", "precision", "coverage"})])
def test_a_tiny_test_split_gives_the_numbers_it_can_and_none_for_the_rest(tmp_path, test_size, measured):
    from genlab import load_dataset

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "fixed.npz", x_train=rng.normal(size=(40, 3)), x_test=rng.normal(size=(test_size, 3)))
    data = load_dataset(tmp_path / "fixed.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy/scipy warnings on the way
        result = quality(_Replay(data.train.x), data)
    numbers = {k for k in ("fd", "fd_floor", "precision", "coverage") if result[k] is not None}
    assert numbers == measured
    assert all(math.isfinite(result[k]) for k in numbers)
