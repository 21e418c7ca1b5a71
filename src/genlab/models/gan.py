"""Generative adversarial networks (Goodfellow et al. 2014) and the stabilisers that make them train.

  generator G: z ~ N(0, I) -> x        discriminator D: x -> a score (real high, generated low)
  losses   ns       D: softplus(-D(x)) + softplus(D(G(z)))      G: softplus(-D(G(z)))   (non-saturating)
           hinge    D: relu(1 - D(x)) + relu(1 + D(G(z)))       G: -D(G(z))            (Lim & Ye 2017)
           wgan_gp  D: D(G(z)) - D(x) + lambda (||grad D(x_hat)|| - 1)^2              (Gulrajani et al. 2017)
                    G: -D(G(z))
  stabilisers, each a config switch: spectral normalisation of D (Miyato et al. 2018), the R1 penalty
  gamma/2 ||grad D(x)||^2 on real data (Mescheder et al. 2018), separate learning rates (TTUR, Heusel et al.
  2017), n_critic discriminator steps per generator step, an exponential moving average of G's weights used
  for sampling (Yazici et al. 2019), DiffAugment translation + cutout on both D inputs (Zhao et al. 2020).
  conditional: a class embedding joins the noise in G; D adds a projection <embed(y), phi(x)> (Miyato &
  Koyama 2018).

Both nets are genlab's shared blocks (nets.py): the generator is a decoder from noise, the discriminator
an encoder to features. The two objectives (discriminator, then generator) run in the one trainer.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from genlab import nets
from genlab.configs import require, whole
from genlab.errors import GenlabError
from genlab.models.base import (
    CONDITIONAL,
    GENERATES,
    MAX_CODE,
    MAX_CONV_WIDTH,
    MAX_LR,
    MAX_WIDTH,
    Objective,
    check_shape,
    normalise_shapes,
)

Loss = Literal["ns", "hinge", "wgan_gp"]
LOSSES = get_args(Loss)
Output = Literal["sigmoid", "linear"]
OUTPUTS = get_args(Output)


@dataclass(frozen=True)
class GANConfig:
    input_shape: tuple[int, ...]  # one example: (C, H, W) or (D,)
    noise_dim: int = 64  # dimension of the generator's noise
    net: nets.Net = "auto"  # auto | mlp | conv (auto: DCGAN-style conv nets for images of side >= 16)
    hidden: tuple[int, ...] = (256, 256)  # MLP hidden widths (generator and discriminator)
    conv_width: int = 32  # channels of the discriminator's first conv layer, doubling per layer
    batch_norm: bool = True  # batch norm in the conv generator (DCGAN)
    output: Output = "linear"  # sigmoid: images in [0, 1]; linear: points and tabular data
    loss: Loss = "hinge"  # ns | hinge | wgan_gp
    spectral_norm: bool = True  # on every discriminator layer
    r1: float = 0.0  # gamma of the R1 penalty on real data; 0 turns it off
    gp_weight: float = 10.0  # lambda of the wgan_gp gradient penalty
    lr_g: float = 1e-4  # TTUR: the generator's learning rate ...
    lr_d: float = 4e-4  # ... and the discriminator's
    beta1: float = 0.0  # Adam's beta1 for both nets
    beta2: float = 0.9  # Adam's beta2 for both nets
    n_critic: int = 1  # discriminator steps per generator step
    ema: float = 0.999  # decay of the generator's weight average used for sampling; 0 samples the raw generator
    diffaugment: bool = False  # translation + cutout on everything D sees (images only)
    conditional: bool = False  # generate a given class; needs labels
    num_classes: int = 0  # set from the data when conditional

    def __post_init__(self):
        normalise_shapes(self)
        shape = self.input_shape
        require(whole(self.noise_dim, 1, MAX_CODE),
               f"noise_dim must be an integer from 1 to {MAX_CODE}")
        require(self.net in nets.NETS, f"net must be one of {', '.join(nets.NETS)}")
        require(len(self.hidden) >= 1 and all(whole(h, 1, MAX_WIDTH) for h in self.hidden),
               f"hidden must be widths from 1 to {MAX_WIDTH}")
        require(whole(self.conv_width, 1, MAX_CONV_WIDTH),
               f"conv_width must be an integer from 1 to {MAX_CONV_WIDTH}")
        require(self.output in OUTPUTS, f"output must be one of {', '.join(OUTPUTS)}")
        require(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, not '{self.loss}'")
        require(self.r1 >= 0, "r1 must be >= 0")
        require(self.gp_weight >= 0, "gp_weight must be >= 0")
        require(0 < self.lr_g <= MAX_LR and 0 < self.lr_d <= MAX_LR, f"lr_g and lr_d must be in (0, {MAX_LR}]")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        require(whole(self.n_critic, 1), "n_critic must be a positive integer")
        require(0 <= self.ema < 1, "ema must be in [0, 1)")
        require(not (self.diffaugment and len(shape) != 3), "diffaugment applies to images only")
        require(whole(self.num_classes, 0), "num_classes must be an integer >= 0")
        require(not self.conditional or self.num_classes >= 2,
               "a conditional GAN needs labelled data with at least 2 classes (for example class subfolders)")

    @classmethod
    def for_data(cls, meta, **overrides):
        """A config that fits a dataset: sigmoid outputs and DiffAugment for images, its class count."""
        image = meta.kind == "image"
        defaults = {"input_shape": tuple(meta.shape), "output": "sigmoid" if image else "linear",
                    "diffaugment": image, "num_classes": len(meta.classes or ())}
        if not image:
            defaults["noise_dim"] = 16
        return cls(**{**defaults, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Generator(nn.Module):
    """noise (B, noise_dim) [+ class embedding] -> x (B, *input_shape)."""

    def __init__(self, c: GANConfig):
        super().__init__()
        extra = c.noise_dim if c.conditional else 0
        self.embed = nn.Embedding(c.num_classes, extra) if c.conditional else None
        self.net = nets.decoder(c.net, c.noise_dim + extra, c.input_shape, c.hidden, c.conv_width,
                                batch_norm=c.batch_norm)
        self.sigmoid = c.output == "sigmoid"

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        x = self.net(z)
        return torch.sigmoid(x) if self.sigmoid else x


class Discriminator(nn.Module):
    """x (B, *input_shape) [, y] -> score (B,): features phi(x), a linear head, and the class projection."""

    def __init__(self, c: GANConfig):
        super().__init__()
        conv = nets.resolve_net(c.net, c.input_shape) == "conv"
        width = 256 if conv else c.hidden[-1]
        self.body = nets.encoder(c.net, c.input_shape, width, c.hidden[:-1], c.conv_width, nets.leaky_relu)
        self.act = nets.leaky_relu()
        self.head = nn.Linear(width, 1)
        self.embed = nn.Embedding(c.num_classes, width) if c.conditional else None
        if c.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.body(x))
        score = self.head(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(y) * h).sum(1)
        return score


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, weight: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: weight * E (||grad critic(x_hat)|| - 1)^2 at random points x_hat between real and fake."""
    t = torch.rand(len(real), *([1] * (real.dim() - 1)), generator=generator).to(real.device)
    x_hat = (t * real + (1 - t) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(critic, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1: gamma/2 * E ||grad critic(x)||^2 on real data."""
    real = real.detach().requires_grad_(True)
    grad, = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return 0.5 * gamma * grad.flatten(1).pow(2).sum(1).mean()


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment's translation (by up to 1/8 of the side, zero fill) and cutout (a half-side square),
    differentiable in x, drawn independently per image (Zhao et al. 2020)."""
    b, _, h, w = x.shape
    dev = x.device
    sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=dev)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=dev)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=dev), torch.arange(h, device=dev),
                                torch.arange(w, device=dev), indexing="ij")
    gx = (gx + tx + 1).clamp(0, h + 1)
    gy = (gy + ty + 1).clamp(0, w + 1)
    x = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)
    ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=dev)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=dev)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=dev), torch.arange(ch, device=dev),
                                torch.arange(cw, device=dev), indexing="ij")
    gx = (gx + ox - ch // 2).clamp(0, h - 1)
    gy = (gy + oy - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=dev)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


class GAN(nn.Module):
    family = "gan"
    capabilities = frozenset({GENERATES})  # and CONDITIONAL when its config is (set per model below)
    # a GAN has no likelihood to validate on: train on the whole training split, DCGAN's batch size
    train_defaults = {"val_fraction": 0.0, "batch_size": 64, "epochs": 100}

    def __init__(self, config: GANConfig):
        super().__init__()
        if config.conditional:
            self.capabilities = GAN.capabilities | {CONDITIONAL}
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_data(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        x = check_shape(x, self.config.input_shape)
        if self.config.output == "sigmoid" and (x.min() < 0 or x.max() > 1):
            raise GenlabError("a GAN with sigmoid outputs needs data in [0, 1]; use output 'linear' for other data.")
        if self.config.conditional:
            if y is None:
                raise GenlabError("a conditional GAN needs labels; this data has none (use class subfolders).")
            if int(y.max()) >= self.config.num_classes or int(y.min()) < 0:
                raise GenlabError(f"labels must be 0..{self.config.num_classes - 1} for this conditional GAN.")

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.config.noise_dim, generator=generator).to(self.device)

    def random_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        if not self.config.conditional:
            return None
        return torch.randint(self.config.num_classes, (n,), generator=generator).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """n draws from the weight-averaged generator (the raw one when ema is 0): (n, *input_shape).

        labels: a class (int) or one per sample, for a conditional GAN; default uniform over the classes."""
        z = self.noise(n, generator)
        if labels is None:
            y = self.random_labels(n, generator)
        else:
            if not self.config.conditional:
                raise GenlabError("this GAN is not conditional; it cannot generate a given class.")
            y = torch.as_tensor(labels, dtype=torch.long, device=self.device).expand(n)
            if int(y.min()) < 0 or int(y.max()) >= self.config.num_classes:
                raise GenlabError(f"class {labels} is out of range: this GAN knows classes "
                                  f"0..{self.config.num_classes - 1}.")
        g = self.generator_ema if self.config.ema > 0 else self.generator
        was_training = g.training
        g.eval()
        x = torch.cat([g(z[i : i + 1000], None if y is None else y[i : i + 1000]) for i in range(0, n, 1000)])
        g.train(was_training)
        return x

    def _d_input(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x) if self.config.diffaugment else x

    def discriminator_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        self.discriminator.requires_grad_(True)
        y_fake = y if c.conditional else None
        with torch.no_grad():
            fake = self.generator(self.noise(len(x)), y_fake)
        critic = lambda v: self.discriminator(v, y)  # noqa: E731
        real_score = critic(self._d_input(x))
        fake_score = critic(self._d_input(fake))
        if c.loss == "ns":
            loss = F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
        elif c.loss == "hinge":
            loss = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
        else:
            loss = fake_score.mean() - real_score.mean()
        out = {"real_score": real_score.mean().detach(), "fake_score": fake_score.mean().detach()}
        if c.loss == "wgan_gp" and c.gp_weight > 0:
            gp = gradient_penalty(critic, x, fake, c.gp_weight)
            loss, out["gp"] = loss + gp, gp.detach()
        if c.r1 > 0:
            r1 = r1_penalty(lambda v: critic(self._d_input(v)), x, c.r1)
            loss, out["r1"] = loss + r1, r1.detach()
        return {"loss": loss, **out}

    def generator_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.discriminator.requires_grad_(False)  # no gradients for D's weights from G's step
        y = y if self.config.conditional else None
        score = self.discriminator(self._d_input(self.generator(self.noise(len(x)), y)), y)
        loss = F.softplus(-score).mean() if self.config.loss == "ns" else -score.mean()
        return {"loss": loss}

    @torch.no_grad()
    def update_average(self) -> None:
        """generator_ema <- d * generator_ema + (1 - d) * generator, d warming up as min(ema, (1+t)/(10+t))."""
        if self.config.ema == 0:
            return
        t = self.ema_steps.item()
        d = min(self.config.ema, (1 + t) / (10 + t))
        for avg, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            avg.lerp_(p, 1 - d)
        for avg, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            if avg.is_floating_point():
                avg.lerp_(b, 1 - d)
            else:
                avg.copy_(b)
        self.ema_steps += 1

    def objectives(self) -> list[Objective]:
        c = self.config
        betas = (c.beta1, c.beta2)
        return [
            Objective("d", list(self.discriminator.parameters()), self.discriminator_loss, lr=c.lr_d, betas=betas),
            Objective("g", list(self.generator.parameters()), self.generator_loss, lr=c.lr_g, betas=betas,
                      every=c.n_critic, after_step=self.update_average),
        ]

    def fit_end(self, x: torch.Tensor) -> None:
        """Nothing to fit after training: the generator is the model."""
