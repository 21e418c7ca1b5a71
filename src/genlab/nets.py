"""Networks shared by the model families: MLPs for vectors and points, conv encoder/decoder for images.

The GAN uses the same blocks: its generator is a decoder from noise (DCGAN-style: transposed convolutions
with batch norm), its discriminator an encoder with leaky ReLUs."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from genlab.errors import GenlabError

Net = Literal["auto", "mlp", "conv"]
NETS = get_args(Net)


def resolve_net(net: str, shape: tuple[int, ...]) -> str:
    """`auto` picks conv nets for images of side 16 or more, an MLP for everything else."""
    if net != "auto":
        return net
    return "conv" if len(shape) == 3 and min(shape[1:]) >= 16 else "mlp"


def mlp(sizes: list[int], activation=nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _halvings(shape: tuple[int, ...]) -> int:
    """How many stride-2 convolutions take a (C, H, W) image down to a side of at most 7 (28 -> 7, 32/64 -> 4)."""
    _, h, w = shape
    if h != w:
        raise GenlabError(f"conv nets need square images, not {h}x{w}; resize them (--size) or use --net mlp.")
    n, side = 0, h
    while side % 2 == 0 and side > 7:
        side //= 2
        n += 1
    if n == 0:
        raise GenlabError(f"conv nets need an even image side of 8 or more, not {h}; use --size or --net mlp.")
    return n


def _widths(n: int, width: int) -> list[int]:
    return [min(width * 2**i, 256) for i in range(n)]


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features): stride-2 4x4 convolutions, then two linear layers."""

    def __init__(self, shape: tuple[int, ...], out_features: int, width: int = 32, hidden: int = 256,
                 activation=nn.ReLU):
        super().__init__()
        n = _halvings(shape)
        chans = [shape[0], *_widths(n, width)]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), activation()]
        side = shape[1] // 2**n
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = mlp([chans[-1] * side * side, hidden, out_features], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W): two linear layers, then stride-2 4x4 transposed convolutions.

    batch_norm: normalise every hidden layer (the DCGAN generator)."""

    def __init__(self, in_features: int, shape: tuple[int, ...], width: int = 32, hidden: int = 256,
                 batch_norm: bool = False):
        super().__init__()
        n = _halvings(shape)
        chans = [*reversed(_widths(n, width)), shape[0]]
        self.side = shape[1] // 2**n
        self.chans0 = chans[0]
        flat = chans[0] * self.side**2
        if batch_norm:
            self.head = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                      nn.Linear(hidden, flat), nn.BatchNorm1d(flat), nn.ReLU())
        else:
            self.head = nn.Sequential(mlp([in_features, hidden, flat]), nn.ReLU())
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
            if i < len(chans) - 2:
                layers += [nn.BatchNorm2d(b), nn.ReLU()] if batch_norm else [nn.ReLU()]
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.head(z).view(-1, self.chans0, self.side, self.side))


class MLPEncoder(nn.Module):
    """(B, *shape) -> (B, out_features), flattening the input."""

    def __init__(self, shape: tuple[int, ...], out_features: int, hidden: tuple[int, ...], activation=nn.ReLU):
        super().__init__()
        self.net = mlp([math.prod(shape), *hidden, out_features], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """(B, in_features) -> (B, *shape)."""

    def __init__(self, in_features: int, shape: tuple[int, ...], hidden: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)
        self.net = mlp([in_features, *reversed(hidden), math.prod(shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


def encoder(net: str, shape, out_features: int, hidden: tuple[int, ...], conv_width: int,
            activation=nn.ReLU) -> nn.Module:
    if resolve_net(net, shape) == "conv":
        if len(shape) != 3:
            raise GenlabError(f"conv nets need images; this data has examples of shape {tuple(shape)}. Use --net mlp.")
        return ConvEncoder(shape, out_features, conv_width, activation=activation)
    return MLPEncoder(shape, out_features, hidden, activation)


def decoder(net: str, in_features: int, shape, hidden: tuple[int, ...], conv_width: int,
            batch_norm: bool = False) -> nn.Module:
    if resolve_net(net, shape) == "conv":
        if len(shape) != 3:
            raise GenlabError(f"conv nets need images; this data has examples of shape {tuple(shape)}. Use --net mlp.")
        return ConvDecoder(in_features, shape, conv_width, batch_norm=batch_norm)
    return MLPDecoder(in_features, shape, hidden)


def leaky_relu() -> nn.Module:
    """The discriminator's activation (DCGAN: slope 0.2)."""
    return nn.LeakyReLU(0.2)
