"""Decoder likelihoods: closed-form Gaussian log densities and the floor on the learned scale."""

import math

import pytest
import torch

from genlab.likelihoods import Gaussian


def test_the_gaussian_log_density_is_the_closed_form():
    g = Gaussian((2,), scale=2.0)
    x, mean = torch.tensor([[1.0, -3.0]]), torch.tensor([[0.0, 1.0]])
    expected = sum(-0.5 * (v / 2) ** 2 - math.log(2) - 0.5 * math.log(2 * math.pi) for v in (1.0, -4.0))
    assert g.log_prob(mean, x).item() == pytest.approx(expected, rel=1e-6)


def test_a_learned_scale_that_collapses_on_a_constant_value_stops_at_its_floor():
    """A constant column drives the learned scale to 0; the floor keeps a new value there at finite nats."""
    g = Gaussian((1,), learned=True, min_scale=1e-3)
    with torch.no_grad():
        g.log_scale.fill_(-200.0)  # exp(-200) is 0 in float32
    z = 1.0 / 1e-3
    assert g.log_prob(torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(
        -0.5 * z * z - math.log(1e-3) - 0.5 * math.log(2 * math.pi), rel=1e-6)
