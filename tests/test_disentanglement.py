"""MIG and DCI: ~1 for codes that are a permutation of the factors, ~0 for codes of pure noise."""

import numpy as np
import pytest

from genlab.metrics.disentanglement import dci, mig


@pytest.fixture(scope="module")
def factors():
    grid = np.stack(np.meshgrid(np.arange(3), np.arange(6), np.arange(8), np.arange(8), indexing="ij"), -1)
    f = grid.reshape(-1, 4)
    rng = np.random.RandomState(0)
    return f[rng.permutation(len(f))]


def test_permuted_factors_score_one(factors):
    codes = factors[:, [2, 0, 3, 1]].astype(float) * 0.7 + 0.1  # each code is one factor, rescaled
    assert mig(codes, factors) == pytest.approx(1.0, abs=0.02)
    n = len(codes) * 3 // 4
    scores = dci(codes[:n], factors[:n], codes[n:], factors[n:])
    assert scores["dci_disentanglement"] > 0.95 and scores["dci_completeness"] > 0.95
    assert scores["dci_informativeness"] == pytest.approx(1.0)


def test_noise_codes_score_zero(factors):
    codes = np.random.RandomState(1).randn(len(factors), 4)
    assert mig(codes, factors) < 0.05
    n = len(codes) * 3 // 4
    scores = dci(codes[:n], factors[:n], codes[n:], factors[n:])
    assert scores["dci_disentanglement"] < 0.1 and scores["dci_completeness"] < 0.1
    assert scores["dci_informativeness"] < 0.45
