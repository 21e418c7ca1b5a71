"""Likelihood metrics: unit conversions and active units by hand, and evaluate() on a model whose log p(x) is exact."""

import math

import pytest
import torch

from genlab.metrics import active_units, bits_per_dim, evaluate
from test_vae import linear_gaussian_vae


def test_bits_per_dim_conversions():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # a continuous density of 8-bit data on [0, 1]: + log 256 nats per dimension = + 8 bits per dimension
    assert bits_per_dim(0.0, 10, dequantized_bits=8) == pytest.approx(8.0)


def test_active_units_counts_dimensions_whose_means_vary():
    torch.manual_seed(0)
    means = torch.stack([torch.randn(500), 0.05 * torch.randn(500), torch.zeros(500)], 1)
    assert active_units(means) == 1
    assert active_units(means, threshold=0.001) == 2


def test_evaluate_on_an_exact_model():
    torch.manual_seed(0)
    model, exact = linear_gaussian_vae(exact_posterior=True)
    x = exact.sample((300,))
    result = evaluate(model, x, kind="tabular", importance_samples=10, progress=False)
    assert result["nll_nats"] == pytest.approx(-exact.log_prob(x).mean().item(), abs=1e-3)
    assert result["elbo_nats"] == pytest.approx(-result["nll_nats"], abs=0.3)
    assert result["bits_per_dim"] is None and result["active_units"] == 2 and result["n"] == 300


def test_evaluate_is_seeded_and_leaves_the_global_rng_alone():
    model, exact = linear_gaussian_vae(exact_posterior=False)
    x = exact.sample((50,))
    torch.manual_seed(7)
    a = evaluate(model, x, kind="tabular", importance_samples=5, progress=False)
    after = torch.rand(1)
    torch.manual_seed(7)
    b = evaluate(model, x, kind="tabular", importance_samples=5, progress=False)
    assert a == b and torch.equal(after, torch.rand(1))


def test_active_units_of_a_single_example_are_unknown_not_zero():
    assert active_units(torch.zeros(1, 4)) is None
    assert active_units(torch.tensor([[0.0, 1.0], [1.0, 1.0]])) == 1  # variance 0.5 against 0
