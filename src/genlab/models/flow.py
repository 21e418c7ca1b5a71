"""Normalizing flow: RealNVP's affine couplings (Dinh et al. 2017) with Glow's ActNorm (Kingma & Dhariwal 2018).

  z = f(x) = f_K(... f_1(x)),  z ~ N(0, I),  every f_k invertible with a cheap Jacobian determinant
  log p(x) = log N(f(x); 0, I) + sum_k log |det df_k / dh_{k-1}|       (exact: change of variables)
  coupling, mask b (1 = kept):  y = b x + (1 - b) (x exp(s) + t),  (s, t) = NN(b x),  s through tanh
                                log |det| = sum (1 - b) s;   inverse: x = (y - t) exp(-s), the same (s, t)
  actnorm:                      y = (x + bias) exp(log_scale), per feature or channel;  log |det| = sum log_scale
  images, first:                y = logit(alpha + (1 - 2 alpha) x), x in [0, 1];
                                log |det| = sum log(1 - 2 alpha) - log p - log(1 - p),  p = alpha + (1 - 2 alpha) x

Tables go through MLP conditioners on the flattened input, the two halves taking turns and the features
shuffled (a fixed permutation) after each pair of couplings; images through conv conditioners at full
resolution with alternating checkerboard masks. 8-bit images are dequantized, (k + u) / 256 with u ~ U[0, 1),
before their density is evaluated, so log p(x) is a density over [0, 1]^D in nats.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from genlab import nets
from genlab.configs import require, whole
from genlab.errors import GenlabError
from genlab.likelihoods import dequantize
from genlab.models.base import (
    DENSITY,
    EXACT,
    GENERATES,
    MAX_CONV_WIDTH,
    MAX_WIDTH,
    VALIDATES,
    Objective,
    check_shape,
    normalise_shapes,
)

MAX_LAYERS = 64


@dataclass(frozen=True)
class FlowConfig:
    input_shape: tuple[int, ...]  # one example: (C, H, W) or (D,)
    layers: int = 8  # affine couplings, each after an ActNorm
    hidden: tuple[int, ...] = (128, 128)  # MLP conditioner widths
    net: nets.Net = "auto"  # auto | mlp | conv (auto: conv for images of side >= 8, else an MLP on the flattened input)
    conv_width: int = 32  # channels of the conv conditioners
    logit_alpha: float = 0.05  # images: x in [0, 1] -> logit(alpha + (1 - 2 alpha) x), finite at 0 and 1

    def __post_init__(self):
        normalise_shapes(self)
        require(whole(self.layers, 1, MAX_LAYERS),
               f"layers must be an integer from 1 to {MAX_LAYERS}, not {self.layers!r}")
        require(all(whole(h, 1, MAX_WIDTH) for h in self.hidden),
               f"hidden must be widths from 1 to {MAX_WIDTH}, not {self.hidden}")
        require(self.net in nets.NETS, f"net must be one of {', '.join(nets.NETS)}, not '{self.net}'")
        require(self.net != "conv" or len(self.input_shape) == 3,
               "net conv needs images, input_shape (C, H, W); use net mlp for tables")
        require(whole(self.conv_width, 1, MAX_CONV_WIDTH),
               f"conv_width must be an integer from 1 to {MAX_CONV_WIDTH}, not {self.conv_width!r}")
        require(isinstance(self.logit_alpha, (int, float)) and 0 < self.logit_alpha < 0.5,
               f"logit_alpha must be a number in (0, 0.5), not {self.logit_alpha!r}")

    @classmethod
    def for_data(cls, meta, **overrides):
        """A config that fits a dataset: its shape (the model treats (C, H, W) as images in [0, 1])."""
        return cls(**{"input_shape": tuple(meta.shape), **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- layers
# Each maps h -> (h', log |det dh'/dh| (B,)) and back with `inverse`.


class Logit(nn.Module):
    """x in [0, 1] -> logit(alpha + (1 - 2 alpha) x): pixel values onto the real line, where N(0, I) lives."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_p, log_q = torch.log(p), torch.log1p(-p)
        return log_p - log_q, (math.log(1 - 2 * self.alpha) - log_p - log_q).flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


class ActNorm(nn.Module):
    """(h + bias) * exp(log_scale) with one bias and scale per feature, shape (D,), or channel, (C, 1, 1).

    Starts as the identity. Glow's data-dependent start is left out on purpose: a resumed run or one
    process of several would start from other weights than a fresh single-process run."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = self.log_scale.expand(h.shape[1:]).sum()  # a channel's scale acts on all H * W pixels
        return (h + self.bias) * torch.exp(self.log_scale), log_det.expand(len(h))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class Coupling(nn.Module):
    """Affine coupling: values where mask = 1 pass unchanged and set the scale and shift of the others."""

    def __init__(self, mask: torch.Tensor, conditioner: nn.Sequential, mask_channel: bool):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the config, not learned
        self.conditioner = conditioner
        self.mask_channel = mask_channel
        nn.init.zeros_(conditioner[-1].weight)  # s = t = 0: every coupling starts as the identity
        nn.init.zeros_(conditioner[-1].bias)

    def scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, t) from the kept values, both 0 where mask = 1."""
        if self.mask_channel:  # a convolution cannot otherwise tell a masked pixel from a dark one
            kept = torch.cat([kept, self.mask.expand(len(kept), *self.mask.shape)], 1)
        s, t = self.conditioner(kept).chunk(2, dim=1)
        free = 1 - self.mask
        return torch.tanh(s) * free, t * free  # tanh: no single layer can blow a value up by more than e

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.scale_shift(h * self.mask)
        return h * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self.scale_shift(y * self.mask)  # the kept values are the same on both sides
        return (y - t) * torch.exp(-s)


class Permute(nn.Module):
    """A fixed shuffle of the features, so that later couplings split them into other halves."""

    def __init__(self, features: int, seed: int):
        super().__init__()
        # from a fixed seed, so every process builds the same one; saved, so a change to torch's randperm
        # cannot change a trained model
        self.register_buffer("order", torch.randperm(features, generator=torch.Generator().manual_seed(seed)))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return h[:, self.order], h.new_zeros(len(h))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, torch.argsort(self.order)]


def halves_mask(features: int, parity: int) -> torch.Tensor:
    """(D,): 1 on the first half (parity 0) or the last (parity 1); all 0 for D = 1, a plain affine map."""
    index = torch.arange(features)
    return (index < features // 2 if parity == 0 else index >= (features + 1) // 2).float()


def checkerboard_mask(height: int, width: int, parity: int) -> torch.Tensor:
    """(1, H, W): 1 on the squares of one colour of a checkerboard."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((rows + cols + parity) % 2 == 0).float().unsqueeze(0)


def conv_conditioner(channels: int, width: int) -> nn.Sequential:
    """(B, C + 1, H, W) kept pixels and mask -> (B, 2 C, H, W) raw scales and shifts, at full resolution."""
    return nn.Sequential(nn.Conv2d(channels + 1, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 1), nn.ReLU(),
                         nn.Conv2d(width, 2 * channels, 3, padding=1))


# ---------------------------------------------------------------------------------------------- the model


class Flow(nn.Module):
    family = "flow"
    capabilities = frozenset({GENERATES, DENSITY, EXACT, VALIDATES})
    continuous = True  # log_likelihood is a density over real values: 8-bit images are dequantized first
    train_defaults = {"epochs": 50, "lr": 1e-3}

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = c = config
        self.images = len(c.input_shape) == 3
        self.conv = c.net == "conv" or (c.net == "auto" and self.images and min(c.input_shape[1:]) >= 8)
        features = math.prod(c.input_shape)
        steps: list[nn.Module] = [Logit(c.logit_alpha)] if self.images else []
        for k in range(c.layers):
            if self.conv:
                channels, height, width = c.input_shape
                steps.append(ActNorm((channels, 1, 1)))
                steps.append(Coupling(checkerboard_mask(height, width, k % 2),
                                      conv_conditioner(channels, c.conv_width), mask_channel=True))
            else:
                steps.append(ActNorm((features,)))
                steps.append(Coupling(halves_mask(features, k % 2), nets.mlp([features, *c.hidden, 2 * features]),
                                      mask_channel=False))
                if k % 2 == 1 and k < c.layers - 1:  # each feature was transformed in this pair: mix them
                    steps.append(Permute(features, seed=k))
        self.steps = nn.ModuleList(steps)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, *input_shape) in data units -> z (B, *input_shape) and log |det dz/dx| (B,) nats."""
        h = x if self.conv else x.flatten(1)
        log_det = x.new_zeros(len(x))
        for step in self.steps:
            h, step_log_det = step(h)
            log_det = log_det + step_log_det
        return h.reshape(x.shape), log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, *input_shape) -> x (B, *input_shape) in data units, images unclamped."""
        h = z if self.conv else z.flatten(1)
        for step in reversed(self.steps):
            h = step.inverse(h)
        return h.reshape(z.shape)

    def log_likelihood(self, x: torch.Tensor, importance_samples: int = 0) -> torch.Tensor:
        """Exact log p(x) under N(0, I) in base space: (B,) nats, differentiable.

        importance_samples is ignored (nothing to estimate); it keeps the signature the VAE shares."""
        z, log_det = self.transform(x)
        return log_det - 0.5 * (z**2 + math.log(2 * math.pi)).flatten(1).sum(1)

    @torch.no_grad()
    def quick_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) as it is, for scoring inputs: (B,) nats; images at the middle of their 8-bit bins, so
        the same input always gets the same score."""
        if self.images:
            x = (torch.round(x * 255) + 0.5) / 256
        return self.log_likelihood(x)

    @torch.no_grad()
    def evaluation_terms(self, x: torch.Tensor, importance_samples: int = 0) -> dict[str, torch.Tensor]:
        """{"nll_nats": -log p(x)}, (B,) each; images are expected dequantized by the caller."""
        return {"nll_nats": -self.log_likelihood(x)}

    def dequantize(self, x: torch.Tensor) -> torch.Tensor:
        """Images of 8-bit values k / 255 -> (k + u) / 256 with u ~ U[0, 1); tables unchanged.

        A density on point masses grows without bound; on the spread-out values it is a bound on the
        discrete log-likelihood (Theis et al. 2016). The same function evaluation uses."""
        return dequantize(x) if self.images else x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ N(0, I) through the inverse: (n, *input_shape) in data units, images clamped to [0, 1]."""
        z = torch.randn(n, *self.config.input_shape, generator=generator).to(self.device)
        x = torch.cat([self.inverse(part) for part in z.split(1000)])  # bounded memory for big n
        return x.clamp(0, 1) if self.images else x

    def check_data(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise GenlabError when x cannot be modelled: the wrong shape, or images outside [0, 1]."""
        x = check_shape(x, self.config.input_shape)
        if self.images and (x.min() < 0 or x.max() > 1):
            raise GenlabError(
                f"a flow on images needs pixel values in [0, 1], but the data spans [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}]; rescale the images, or flatten them into a table."
            )

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        nll = -self.log_likelihood(self.dequantize(x)).mean()
        return {"loss": nll, "nll_nats": nll.detach()}

    def objectives(self) -> list[Objective]:
        return [Objective("flow", list(self.parameters()), self.loss)]

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, importance_samples: int = 0) -> torch.Tensor:
        """-log p(x) of the (dequantized) inputs: (B,) nats."""
        return -self.log_likelihood(self.dequantize(x))

    def fit_end(self, x: torch.Tensor) -> None:
        """Called by the trainer once training ends; a flow has nothing to fit afterwards."""
