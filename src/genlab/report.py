"""Pictures of a run: image grids (Pillow) and point/tabular scatter plots (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.errors import GenlabError

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
    path = Path(path)
    image_grid(images, ncol).save(path)
    return path


def save_scatter(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None,
                 title: str = "") -> Path:
    """The first two coordinates of points (N, D), over a reference set in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if reference is not None:
        r = reference.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=3, c="0.75", label="data")
    p = points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1] if p.shape[1] > 1 else np.zeros(len(p)), s=3, c="tab:blue", label="model")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", markerscale=4)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def save_samples_picture(samples: torch.Tensor, kind: str, path: str | Path, reference=None) -> Path:
    if kind == "image":
        return save_image_grid(samples, path)
    return save_scatter(samples, path, reference, title="samples")


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
    """samples.png and reconstructions.png in a run directory."""
    generator = torch.Generator().manual_seed(0)
    model.eval()
    kind = data.meta.kind
    samples = model.sample(n if kind == "image" else 1000, generator=generator).cpu()
    reference = data.test.x[:1000] if kind != "image" else None
    save_samples_picture(samples, kind, Path(path) / "samples.png", reference)
    inputs = data.test.x[: 32 if kind == "image" else 1000]
    recon = model.reconstruct(inputs.to(model.device)).cpu()
    save_reconstructions_picture(inputs, recon, kind, Path(path) / "reconstructions.png")
