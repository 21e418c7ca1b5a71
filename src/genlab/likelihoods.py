"""Decoder output distributions p(x | z): the decoder emits one parameter per input value."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from genlab.errors import GenlabError

LikelihoodName = Literal["bernoulli", "gaussian", "gaussian_learned"]
LIKELIHOODS = get_args(LikelihoodName)


class Bernoulli(nn.Module):
    """Pixels in [0, 1] as Bernoulli probabilities; the decoder emits logits."""

    continuous = False

    def log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """logits, x: (B, *shape) -> (B,) nats."""
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def check_data(self, x: torch.Tensor) -> None:
        if x.min() < 0 or x.max() > 1:
            raise GenlabError(
                f"a Bernoulli decoder needs values in [0, 1], but the data spans [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}]; rescale it or use --likelihood gaussian."
            )


class Gaussian(nn.Module):
    """Normal with the decoder's output as mean and a fixed scale, or a learned scale per input value."""

    continuous = True

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0, learned: bool = False, min_scale: float = 1e-3):
        super().__init__()
        log_scale = torch.full(tuple(shape), math.log(scale))
        if learned:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.min_log_scale = math.log(min_scale)

    def log_prob(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """mean, x: (B, *shape) -> (B,) nats."""
        log_scale = self.log_scale.clamp(min=self.min_log_scale)
        z = (x - mean) * torch.exp(-log_scale)
        return (-0.5 * z * z - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def check_data(self, x: torch.Tensor) -> None:
        pass


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """8-bit values k / 255 -> (k + u) / 256 with u ~ U[0, 1): the one dequantization, for training a continuous
    density (a flow) and for evaluating one."""
    return (torch.round(x * 255) + torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)) / 256


def build_likelihood(name: str, shape: tuple[int, ...], scale: float) -> nn.Module:
    if name == "bernoulli":
        return Bernoulli()
    if name in ("gaussian", "gaussian_learned"):
        return Gaussian(shape, scale=scale, learned=name == "gaussian_learned")
    raise GenlabError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, not '{name}'.")
