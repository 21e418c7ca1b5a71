"""What every family shares: the Objective the trainer optimises, and the latent models' config and nets."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from genlab import nets
from genlab.configs import require, whole
from genlab.errors import GenlabError
from genlab.likelihoods import LIKELIHOODS, LikelihoodName, build_likelihood

# What a model can do. Each family declares its set in `capabilities`; tools ask `can(model, ...)`, never the
# family's name or hasattr, so a new family works in every tool that needs only what it declares.
GENERATES = "generates"  # sample(n, generator=None) -> (n, *input_shape) in data units
ENCODES = "encodes"  # encode(x), code(x) -> (B, latent_dim), decode(z), decode_mean(z), reconstruct(x); latent_dim
POSTERIOR = "posterior"  # encode(x) is q(z | x), a Normal whose prior is centred at 0 (per-dimension KL, traversals)
# log_likelihood(x, importance_samples) -> (B,) nats, exact or a bound that tightens with importance_samples;
# quick_log_likelihood(x) -> (B,) nats, cheap enough to score every input (a VAE: the ELBO over 10 draws);
# `continuous`: True when that is a density over real values (8-bit images are then dequantized to evaluate it)
DENSITY = "density"
EXACT = "exact"  # log_likelihood is exact: importance_samples do not matter (a flow)
RECONSTRUCTS = "reconstructs"  # reconstruction_loss(x) -> (B,) nats
# DENSITY and RECONSTRUCTS models also give evaluation_terms(x, importance_samples) -> {name: (B,) nats}, the
# per-example numbers `genlab evaluate` averages: nll_nats (DENSITY), recon_loss (RECONSTRUCTS), and whatever
# else the family can say (a VAE: elbo_nats, kl_nats)
VALIDATES = "validates"  # validation_loss(x, importance_samples) -> (B,) nats: model selection on held-out data
CLASSIFIES = "classifies"  # predict(x) -> (B,) labels
REWEIGHTS = "reweights"  # sampling_weights(split) -> (N,) or None: the trainer draws each epoch's examples by them
CONDITIONAL = "conditional"  # sample(n, generator, labels=k) generates class k


def can(model, capability: str) -> bool:
    """Whether `model` declared `capability` (one of the names above). On a family's class: what every model of
    the family can do."""
    return capability in getattr(model, "capabilities", frozenset())


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """`model` in eval mode for the block, its train/eval mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def codes(model, x, batch_size: int = 500) -> torch.Tensor:
    """The code of every input (a model that ENCODES; the posterior mean of a VAE), in batches, in eval mode:
    (N, latent_dim) on the CPU. x may be data streamed from disk."""
    with evaluating(model):
        return torch.cat([model.code(torch.as_tensor(x[i : i + batch_size]).to(model.device)).cpu()
                          for i in range(0, len(x), batch_size)])


@dataclass
class Objective:
    """One thing the trainer optimises: these parameters, this loss of a batch, this optimiser setting.

    `loss(x, y)` returns a dict of scalars; "loss" is minimised, the rest are logged. A VAE has one
    objective; a GAN two (discriminator, then generator), `every` giving the step ratio.
    """

    name: str
    parameters: list[nn.Parameter]
    loss: Callable[[torch.Tensor, torch.Tensor | None], dict[str, torch.Tensor]]
    lr: float | None = None  # None: the training config's learning rate
    betas: tuple[float, float] = (0.9, 0.999)
    every: int = 1  # update on every n-th step
    after_step: Callable[[], None] | None = None  # called after each optimiser step (the GAN's weight average)


# sizes past these would not fit in memory (a model's weights and Adam's state grow with their squares)
MAX_CODE, MAX_WIDTH, MAX_CONV_WIDTH = 4096, 16384, 1024
MAX_LR = 10.0  # Adam steps of about lr: far above this the weights overflow to inf within a few steps


@dataclass(frozen=True)
class LatentConfig:
    """Fields shared by the encoder-decoder families (AE, VAE)."""

    input_shape: tuple[int, ...]  # one example: (C, H, W) or (D,)
    latent_dim: int = 16  # dimensions of the latent code (the bottleneck)
    net: nets.Net = "auto"  # auto | mlp | conv (auto: conv for images of side >= 16)
    hidden: tuple[int, ...] = (512,)  # MLP hidden widths, encoder side (the decoder mirrors them)
    conv_width: int = 32  # channels of the first conv layer, doubling per layer
    likelihood: LikelihoodName = "bernoulli"  # bernoulli (images) | gaussian | gaussian_learned (tables, points)
    gaussian_scale: float = 1.0  # the fixed scale, or the learned scale's start

    def __post_init__(self):
        normalise_shapes(self)
        require(whole(self.latent_dim, 1, MAX_CODE),
               f"latent_dim must be an integer from 1 to {MAX_CODE}")
        require(self.net in nets.NETS, f"net must be one of {', '.join(nets.NETS)}")
        require(all(isinstance(h, int) and 1 <= h <= MAX_WIDTH for h in self.hidden),
               f"hidden must be widths from 1 to {MAX_WIDTH}")
        require(whole(self.conv_width, 1, MAX_CONV_WIDTH),
               f"conv_width must be an integer from 1 to {MAX_CONV_WIDTH}")
        require(self.likelihood in LIKELIHOODS, f"likelihood must be one of {', '.join(LIKELIHOODS)}")
        require(self.gaussian_scale > 0, "gaussian_scale must be positive")

    @classmethod
    def for_data(cls, meta, **overrides):
        """A config that fits a dataset: its shape, Bernoulli pixels for images, a learned Gaussian otherwise."""
        likelihood = "bernoulli" if meta.kind == "image" else "gaussian_learned"
        return cls(**{"input_shape": tuple(meta.shape), "likelihood": likelihood, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def normalise_shapes(config) -> None:
    """A frozen config's input_shape and hidden as tuples (JSON gives lists), the shape checked."""
    shape = tuple(config.input_shape)
    object.__setattr__(config, "input_shape", shape)
    object.__setattr__(config, "hidden", tuple(config.hidden))
    if not shape or len(shape) not in (1, 3) or any(not isinstance(s, int) or s < 1 for s in shape):
        raise GenlabError(f"input_shape must be (D,) or (C, H, W) with positive sizes, not {shape}.")


def check_shape(x, input_shape: tuple[int, ...]) -> torch.Tensor:
    """x (or, for data streamed from disk, its first batch) after checking one example's shape."""
    if not torch.is_tensor(x):
        x = x[:256]
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise GenlabError(
            f"this model takes examples of shape {tuple(input_shape)}, the data has {tuple(x.shape[1:])}."
        )
    return x


class LatentModel(nn.Module):
    """Encoder, decoder and decoder likelihood, built from a LatentConfig; families add the rest."""

    family = ""
    capabilities = frozenset({GENERATES, ENCODES, VALIDATES})

    def __init__(self, config: LatentConfig, encoder_outputs: int):
        super().__init__()
        self.config = config
        c = config
        self.encoder = nets.encoder(c.net, c.input_shape, encoder_outputs, c.hidden, c.conv_width)
        self.decoder = nets.decoder(c.net, c.latent_dim, c.input_shape, c.hidden, c.conv_width)
        self.likelihood = build_likelihood(c.likelihood, c.input_shape, c.gaussian_scale)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> the likelihood's parameters (B, *input_shape): logits or means."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_dim) -> E[x | z], (B, *input_shape)."""
        return self.likelihood.mean(self.decode(z))

    def check_data(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise GenlabError when x (labels y) cannot be modelled by this model (shape, value range)."""
        self.likelihood.check_data(check_shape(x, self.config.input_shape))

    def fit_end(self, x: torch.Tensor) -> None:
        """Called by the trainer once training ends, with the training inputs."""
