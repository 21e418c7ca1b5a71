"""Likelihood metrics: ELBO, IWAE bound on log p(x) (nats), bits/dim, reconstruction, KL, active units."""

from __future__ import annotations

import math
import sys

import torch
from tqdm.auto import tqdm

from genlab.errors import GenlabError
from genlab.models.base import DENSITY, can


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


def _dequantize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """8-bit values k / 255 -> (k + u) / 256 with u ~ U[0, 1)."""
    k = torch.round(x * 255)
    return (k + torch.rand(x.shape, generator=generator)) / 256


@torch.no_grad()
def evaluate(model, x: torch.Tensor, *, kind: str = "image", importance_samples: int = 1000, batch_size: int = 100,
             seed: int = 0, progress: bool = True) -> dict:
    """Per-dataset means of the likelihood metrics of a trained AE or VAE on inputs x (N, *shape).

    Keys: elbo_nats, nll_nats (IWAE bound with `importance_samples`), bits_per_dim, recon_loss, kl_nats,
    active_units (VAE); recon_loss (AE). Monte Carlo parts are seeded.
    """
    if len(x) == 0:
        raise GenlabError("there are no examples to evaluate.")
    if batch_size < 1:
        raise GenlabError(f"batch_size must be a positive integer, not {batch_size}.")
    if importance_samples < 1:
        raise GenlabError(f"importance_samples must be a positive integer, not {importance_samples}.")
    model.check_data(x)
    model.eval()
    device = model.device
    generator = torch.Generator().manual_seed(seed)
    binary = _is_binary(x if torch.is_tensor(x) else x[:256])  # data streamed from disk: a first batch
    dequantized = 8 if model.likelihood.continuous and kind == "image" and not binary else None
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    sums = {"recon_loss": 0.0, "kl_nats": 0.0, "elbo_nats": 0.0, "nll_nats": 0.0}
    means = []
    is_vae = can(model, DENSITY)
    try:
        bar = tqdm(total=len(x), disable=not progress, file=sys.stderr, desc="evaluate", unit="ex")
        with bar:
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size]
                if dequantized:
                    xb = _dequantize(xb, generator)
                xb = xb.to(device)
                if is_vae:
                    recon, kl, posterior = model.elbo_terms(xb)
                    means.append(posterior.loc.cpu())
                    sums["recon_loss"] += -recon.sum().item()
                    sums["kl_nats"] += kl.sum().item()
                    sums["elbo_nats"] += (recon - kl).sum().item()
                    sums["nll_nats"] += -model.log_likelihood(xb, importance_samples).sum().item()
                else:
                    sums["recon_loss"] += model.reconstruction_loss(xb).sum().item()
                bar.update(len(xb))
    finally:
        torch.set_rng_state(rng_state)
    n = len(x)
    dim = int(x[0].numel())
    if not is_vae:
        return {"recon_loss": sums["recon_loss"] / n, "n": n}
    result = {k: v / n for k, v in sums.items()}
    result["importance_samples"] = importance_samples
    binary_bernoulli = not model.likelihood.continuous and binary
    if binary_bernoulli or dequantized:
        result["bits_per_dim"] = bits_per_dim(result["nll_nats"], dim, dequantized)
    else:
        result["bits_per_dim"] = None  # a Bernoulli decoder on grey pixels, or a density on tabular data
    result["dequantized"] = bool(dequantized)
    result["active_units"] = active_units(torch.cat(means))
    result["n"] = n
    return result
