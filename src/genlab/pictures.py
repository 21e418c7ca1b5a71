"""Pictures of models and data: image grids (Pillow), scatter plots and curves (matplotlib). A leaf module:
the trainer draws its per-epoch pictures with it, and the report builds on it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab import files
from genlab.errors import GenlabError
from genlab.models.base import ENCODES, can

MIN_CELL = 32  # small images (8x8 digits) are enlarged to at least this many pixels per cell


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2) -> Image.Image:
    """images: (N, C, H, W) in [0, 1], C in 1 or 3 -> one Pillow image with N cells on a grey background."""
    images = images.detach().float().clamp(0, 1).cpu()
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise GenlabError(f"an image grid needs (N, C, H, W) images with 1 or 3 channels, not {tuple(images.shape)}.")
    n, c, h, w = images.shape
    zoom = max(1, math.ceil(MIN_CELL / max(h, w)))
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    ch, cw = h * zoom, w * zoom
    canvas = np.full((nrow * (ch + pad) + pad, ncol * (cw + pad) + pad, 3), 128, np.uint8)
    pixels = (images.numpy() * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    if c == 1:
        pixels = np.repeat(pixels, 3, axis=3)
    pixels = pixels.repeat(zoom, axis=1).repeat(zoom, axis=2)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (ch + pad), pad + col * (cw + pad)
        canvas[top : top + ch, left : left + cw] = pixels[i]
    return Image.fromarray(canvas)


def save_image_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None) -> Path:
    return files.save_image(image_grid(images, ncol), path)


def save_scatter(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None,
                 title: str = "") -> Path:
    """The first two coordinates of points (N, D), over a reference set in grey."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if reference is not None:
        ax.scatter(*_xy(reference), s=3, c="0.75", label="data")
    ax.scatter(*_xy(points), s=3, c="tab:blue", label="model")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", markerscale=4)
    if title:
        ax.set_title(title)
    return _saved(fig, path)


def _xy(points) -> tuple[np.ndarray, np.ndarray]:
    """The first two coordinates of (N, D) points to plot; one-column data is drawn on the line y = 0."""
    p = torch.as_tensor(points).detach().cpu().float().numpy().reshape(len(points), -1)
    return p[:, 0], p[:, 1] if p.shape[1] > 1 else np.zeros(len(p))


def save_samples_picture(samples: torch.Tensor, kind: str, path: str | Path, reference=None,
                         fast: bool = False) -> Path:
    """Images: a grid. Points: a scatter over the reference (fast: a raster drawn by numpy, for every epoch)."""
    if kind == "image":
        return save_image_grid(samples, path)
    if fast:
        return save_point_raster(samples, path, reference)
    return save_scatter(samples, path, reference, title="samples")


def save_point_raster(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None,
                      size: int = 256) -> Path:
    """The first two coordinates of points as blue pixels over the reference's grey ones, no axes: a few ms."""
    p = np.nan_to_num(np.stack(_xy(points), 1), nan=0.0, posinf=0.0, neginf=0.0)  # a diverged model's samples
    r = np.nan_to_num(np.stack(_xy(reference), 1), nan=0.0, posinf=0.0, neginf=0.0) if reference is not None else p
    lo, hi = r.min(0).astype(np.float64), r.max(0).astype(np.float64)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))  # one point (or one value): a window around it
    lo, hi = lo - 0.1 * span, hi + 0.1 * span
    canvas = np.full((size, size, 3), 255, np.uint8)

    def pixels(x):
        ij = ((x - lo) / (hi - lo) * (size - 1)).round().astype(int)
        ij = ij[((ij >= 0) & (ij < size)).all(1)]
        return size - 1 - ij[:, 1], ij[:, 0]

    if reference is not None:
        canvas[pixels(r)] = (190, 190, 190)
    canvas[pixels(p)] = (31, 119, 180)
    return files.save_image(Image.fromarray(canvas), path)


def save_reconstructions_picture(inputs: torch.Tensor, recon: torch.Tensor, kind: str, path: str | Path) -> Path:
    """Images: inputs on odd rows, their reconstructions below them. Points: both scattered."""
    if kind == "image":
        ncol = min(8, len(inputs))
        rows = []
        for i in range(0, len(inputs), ncol):
            rows += [inputs[i : i + ncol], recon[i : i + ncol]]
        return save_image_grid(torch.cat(rows), path, ncol=ncol)
    return save_scatter(recon, path, inputs, title="reconstructions (blue) of data (grey)")


@torch.no_grad()
def save_run_pictures(model, data, path: Path, n: int = 64) -> None:
    """samples.png and (for models with an encoder) reconstructions.png in a run directory."""
    generator = torch.Generator().manual_seed(0)
    model.eval()
    kind = data.meta.kind
    samples = model.sample(n if kind == "image" else 1000, generator=generator).cpu()
    reference = data.test.x[:1000] if kind != "image" else None
    save_samples_picture(samples, kind, Path(path) / "samples.png", reference)
    if not can(model, ENCODES):
        return
    inputs = data.test.x[: 32 if kind == "image" else 1000]
    recon = model.reconstruct(inputs.to(model.device)).cpu()
    save_reconstructions_picture(inputs, recon, kind, Path(path) / "reconstructions.png")


# ---------------------------------------------------------------------------------------------- plots


def _saved(fig, path: str | Path) -> Path:
    """Lay out, write and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        return files.save_figure(fig, path)
    finally:
        plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_training_curves(history: list[dict], path: str | Path) -> Path | None:
    """Per-epoch training loss and validation loss (nats) from a run's metrics rows."""
    epochs = [r for r in history if r.get("kind") == "epoch"]
    if not epochs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    keys = [k for k in ("loss", "val_loss_nats", "d_loss", "g_loss") if any(k in r for r in epochs)]
    for key in keys:
        ax.plot([r["epoch"] for r in epochs if key in r], [r[key] for r in epochs if key in r], label=key)
    kept = next((r.get("kept_epoch") for r in history if r.get("kind") == "end"), None)
    if kept:
        ax.axvline(kept, color="0.6", ls="--", lw=1, label=f"kept epoch {kept}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if "d_loss" in keys else "nats per example")
    ax.legend()
    return _saved(fig, path)


def save_monitor_curves(history: list[dict], path: str | Path) -> Path | None:
    """The quality numbers logged during training (modes, high-quality share, classes covered) by step."""
    rows = [r for r in history if r.get("kind") == "monitor"]
    keys = [k for k in ("modes", "classes_covered", "high_quality") if any(k in r for r in rows)]
    if not keys:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), dpi=100, squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r], marker=".")
        ax.set_xlabel("step")
        ax.set_title(key)
    return _saved(fig, path)


def save_latent_map(coords: torch.Tensor, labels: torch.Tensor | None, path: str | Path, classes=(),
                    title: str = "") -> Path:
    """A 2-D map of codes, coloured by label when there are labels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    x, y = _xy(coords)
    if labels is None:
        ax.scatter(x, y, s=4, c="tab:blue")
    else:
        for value in torch.unique(labels).tolist():
            pick = (labels == value).numpy()
            name = classes[value] if value < len(classes) else str(value)
            ax.scatter(x[pick], y[pick], s=4, label=name)
        ax.legend(markerscale=3, fontsize=7, loc="best", ncol=2)
    ax.set_title(title)
    return _saved(fig, path)
