"""Looking inside the latent space: codes, traversals, interpolations, per-dimension KL, a 2-D map."""

from __future__ import annotations

import torch

from genlab.errors import GenlabError, article
from genlab.models.base import POSTERIOR, can, codes, evaluating

encode = codes  # the code of each input: the posterior mean for a VAE, the code for an AE. (N, latent_dim)


@torch.no_grad()
def kl_per_dimension(model, x: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """Mean over the data of KL(q(z_d | x) || p(z_d)) for each latent dimension d: (latent_dim,) nats.

    Dimensions with near-zero KL carry no information about x (collapsed); the largest are the ones to look at.
    """
    if not can(model, POSTERIOR):
        raise GenlabError(f"per-dimension KL needs an encoder with a posterior (a VAE); this is "
                          f"{article(model.family)}.")
    with evaluating(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the VampPrior's Monte Carlo draws
        total = sum(model.kl_per_dimension(x[i : i + batch_size].to(model.device)).sum(0).cpu()
                    for i in range(0, len(x), batch_size))
    return total / len(x)


def top_dimensions(model, x: torch.Tensor, k: int) -> list[int]:
    """The k dimensions with the most KL (VAE) or the most variance of the codes (AE)."""
    score = kl_per_dimension(model, x) if can(model, POSTERIOR) else encode(model, x).var(0)
    return torch.argsort(score, descending=True)[:k].tolist()


@torch.no_grad()
def traverse(model, code: torch.Tensor, dims: list[int], span: float = 3.0, steps: int = 9) -> torch.Tensor:
    """Decode `code` (latent_dim,) while one dimension at a time sweeps [-span, span] (prior std units).

    Returns (len(dims) * steps, *input_shape): one row per dimension, the other dimensions held fixed.
    """
    latent_dim = len(code)
    bad = [d for d in dims if not 0 <= d < latent_dim]
    if bad:
        raise GenlabError(f"latent dimension(s) {bad} do not exist: this model has dimensions 0..{latent_dim - 1}.")
    if steps < 2:
        raise GenlabError(f"a traversal needs at least 2 steps, not {steps}.")
    if not 0 < span <= 100:
        raise GenlabError(f"a traversal sweeps -R..R prior standard deviations with R in (0, 100], not {span}.")
    values = torch.linspace(-span, span, steps)
    z = code.repeat(len(dims) * steps, 1)
    for row, d in enumerate(dims):
        z[row * steps : (row + 1) * steps, d] = values
    with evaluating(model):
        return model.decode_mean(z.to(model.device)).cpu()


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between vectors a and b at fractions t (T,): (T, D). Linear when they are parallel."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1, 1))
    t = t[:, None]
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.no_grad()
def interpolate(model, z_from: torch.Tensor, z_to: torch.Tensor, steps: int = 10, spherical: bool = False):
    """Decoded points on the line (or great circle, `spherical`) between two codes: (steps, *input_shape)."""
    if steps < 2:
        raise GenlabError(f"an interpolation needs at least 2 steps, not {steps}.")
    t = torch.linspace(0, 1, steps)
    z = slerp(z_from, z_to, t) if spherical else (1 - t[:, None]) * z_from + t[:, None] * z_to
    with evaluating(model):
        return model.decode_mean(z.to(model.device)).cpu()


def map_2d(codes: torch.Tensor, method: str = "pca", seed: int = 0) -> torch.Tensor:
    """Codes (N, latent_dim) -> 2-D coordinates: themselves when latent_dim <= 2, else PCA or t-SNE."""
    if codes.shape[1] <= 2 or len(codes) < 3:  # nothing to project, or too few codes to fit a projection
        return codes[:, :2] if codes.shape[1] >= 2 else torch.cat([codes, torch.zeros_like(codes)], 1)
    if method == "pca":
        from sklearn.decomposition import PCA

        return torch.from_numpy(PCA(2, random_state=seed).fit_transform(codes.numpy()))
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(2, random_state=seed, init="pca", perplexity=min(30.0, (len(codes) - 1) / 3))
        return torch.from_numpy(tsne.fit_transform(codes.numpy()))
    raise GenlabError(f"the latent map method must be pca or tsne, not '{method}'.")
