"""How a training draws its examples: a seeded order per epoch, optionally weighted per example, and the
weights that make rare examples common.

Latent weights (the DB-VAE, Amini et al. 2019): encode the training set; per latent dimension d a histogram
of the means (`bins` bins) gives each example a density h_d(z_d), smoothed by `alpha`.
  max      (the MIT 6.S191 lab): w = max_d p_d, p_d = (1 / q_d) / sum(1 / q_d), q_d = (h_d + alpha) / sum_bins
  product  (the paper): w proportional to prod_d 1 / (h_d + alpha); with `temper` the geometric mean over the
           d dimensions, prod_d (...)^(1/L), which keeps the same order but cannot put all the weight on one
           or two examples
  joint    w proportional to 1 / p(z), p a Gaussian mixture fitted to the codes (scikit-learn), tempered the same
           way: rare combinations of features (a digit in another digit's colour) are rare jointly, not per
           dimension
Whatever the weights, the effective sample size (sum w)^2 / sum w^2 says how many examples they really use; the
trainer logs it every epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from genlab.errors import GenlabError


def epoch_order(n: int, seed: int, epoch: int, weights: torch.Tensor | None) -> torch.Tensor:
    """The example order of one epoch: a permutation, or n weighted draws with replacement.

    Seeded by (seed, epoch) alone, so any epoch's order can be rebuilt without replaying the ones before.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is None:
        return torch.randperm(n, generator=g)
    return torch.multinomial(weights.double(), n, replacement=True, generator=g)


def effective_sample_size(weights) -> float:
    """(sum w)^2 / sum w^2: N for uniform weights, 1 when one example holds all the weight."""
    w = np.asarray(weights, np.float64)
    return float(w.sum() ** 2 / (w**2).sum())


def check_weights(weights: torch.Tensor, n: int) -> torch.Tensor:
    weights = torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()
    if len(weights) != n:
        raise GenlabError(f"got {len(weights)} sampling weights for {n} training examples; give one per example.")
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.max() <= 0:
        raise GenlabError("sampling weights must be finite, non-negative and not all zero.")
    return weights / weights.max()  # only their ratios count; 1e308s would overflow a sum


def histogram_densities(codes: np.ndarray, bins: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(N, L) codes -> (N, L) histogram density of each example's bin in each dimension, and the per-dimension
    (density, edges) pairs (numpy.histogram with density=True; the outer edges stretched to cover all)."""
    codes = np.asarray(codes, np.float64)
    per_example = np.empty_like(codes)
    hists = []
    for d in range(codes.shape[1]):
        density, edges = np.histogram(codes[:, d], bins=bins, density=True)
        index = np.clip(np.digitize(codes[:, d], edges[1:-1]), 0, bins - 1)
        per_example[:, d] = density[index]
        hists.append((density, edges))
    return per_example, hists


def latent_weights(codes, bins: int = 10, alpha: float = 0.001, aggregate: str = "max",
                   temper: bool = True) -> np.ndarray:
    """Sampling weights (N,) summing to 1 from latent codes (N, L): high where codes are rare."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) == 0:
        raise GenlabError(f"codes must be (N, L) with N >= 1, not shape {codes.shape}.")
    if aggregate == "max":
        densities, hists = histogram_densities(codes, bins)
        totals = np.array([density.sum() + bins * alpha for density, _ in hists])  # the smoothing's normaliser
        p = totals / (densities + alpha)  # 1 / smoothed normalised density, per example and dimension
        w = (p / p.sum(0)).max(1)
    elif aggregate in ("product", "joint"):
        if aggregate == "product":
            densities, _ = histogram_densities(codes, bins)
            log_w = -np.log(densities + alpha).sum(1)
        else:  # a joint density sees combinations that per-dimension histograms cannot
            from sklearn.mixture import GaussianMixture

            k = max(1, min(10, len(codes) // 50))
            mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=0).fit(codes)
            log_w = -mixture.score_samples(codes)
        if temper:
            log_w = log_w / codes.shape[1]
        w = np.exp(log_w - log_w.max())
    else:
        raise GenlabError(f"aggregate must be max, product or joint, not '{aggregate}'.")
    return w / w.sum()
