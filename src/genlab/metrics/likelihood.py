"""Likelihood metrics: ELBO, IWAE bound on log p(x) (nats), bits/dim, reconstruction, KL, active units."""

from __future__ import annotations

import math
import sys

import torch
from tqdm.auto import tqdm

from genlab.errors import GenlabError, article
from genlab.likelihoods import dequantize
from genlab.models.base import DENSITY, EXACT, POSTERIOR, RECONSTRUCTS, can, codes, evaluating

# the unit of each number `evaluate` reports, for tables that print them (the CLI, the report)
UNITS = {"elbo_nats": "nats", "nll_nats": "nats", "recon_loss": "nats", "kl_nats": "nats", "bits_per_dim": "bits/dim"}


def bits_per_dim(nll_nats: float, dim: int, dequantized_bits: int | None = None) -> float:
    """Nats per example -> bits per dimension.

    For a continuous density on 8-bit data rescaled to [0, 1] and dequantized as (k + u) / 256, the
    discrete log-likelihood bound adds dim * log(256) nats (dequantized_bits=8).
    """
    extra = dim * dequantized_bits * math.log(2) if dequantized_bits else 0.0
    return (nll_nats + extra) / (dim * math.log(2))


def active_units(means: torch.Tensor, threshold: float = 0.01) -> int | None:
    """Latent dimensions d with Cov_x(E_q[z_d | x]) > threshold (Burda et al. 2016); means: (N, latent_dim).
    None for a single example, which has no spread to measure."""
    if len(means) < 2:
        return None
    return int((means.double().var(0, unbiased=True) > threshold).sum())


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def measurable(model) -> bool:
    """Whether `evaluate` applies: the model gives a density or reconstructions (its evaluation_terms)."""
    return can(model, DENSITY) or can(model, RECONSTRUCTS)


@torch.no_grad()
def evaluate(model, x: torch.Tensor, *, kind: str = "image", importance_samples: int = 1000, batch_size: int = 100,
             seed: int = 0, progress: bool = True) -> dict:
    """Per-dataset means of a model's evaluation terms on inputs x (N, *shape), and what follows from them.

    Keys: the model's `evaluation_terms` (nll_nats for a density, with the IWAE bound's `importance_samples` for
    a VAE; recon_loss for reconstructions; elbo_nats and kl_nats for a VAE), bits_per_dim, dequantized and
    importance_samples with nll_nats, active_units for a posterior, n. Monte Carlo parts are seeded.
    """
    if len(x) == 0:
        raise GenlabError("there are no examples to evaluate.")
    if batch_size < 1:
        raise GenlabError(f"batch_size must be a positive integer, not {batch_size}.")
    if importance_samples < 1:
        raise GenlabError(f"importance_samples must be a positive integer, not {importance_samples}.")
    if not measurable(model):
        raise GenlabError(f"{article(model.family)} has no likelihood or reconstruction to evaluate; judge it by its "
                          "samples (genlab evaluate --quality).")
    model.check_data(x)
    device = model.device
    generator = torch.Generator().manual_seed(seed)
    binary = _is_binary(x if torch.is_tensor(x) else x[:256])  # data streamed from disk: a first batch
    density = can(model, DENSITY)
    dequantized = 8 if density and model.continuous and kind == "image" and not binary else None
    sums: dict[str, float] = {}
    with evaluating(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bar = tqdm(total=len(x), disable=not progress, file=sys.stderr, desc="evaluate", unit="ex")
        with bar:
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size]
                if dequantized:
                    xb = dequantize(xb, generator)
                for key, value in model.evaluation_terms(xb.to(device), importance_samples).items():
                    sums[key] = sums.get(key, 0.0) + value.double().sum().item()
                bar.update(len(xb))
    n = len(x)
    result = {k: v / n for k, v in sums.items()}
    if density and not can(model, EXACT):
        result["importance_samples"] = importance_samples
    if density:
        if (not model.continuous and binary) or dequantized:
            result["bits_per_dim"] = bits_per_dim(result["nll_nats"], int(x[0].numel()), dequantized)
        else:
            result["bits_per_dim"] = None  # a Bernoulli decoder on grey pixels, or a density on tabular data
        result["dequantized"] = bool(dequantized)
    if can(model, POSTERIOR):
        result["active_units"] = active_units(codes(model, x))
    result["n"] = n
    return result
