"""Image folders larger than memory: files decoded on demand, batch by batch, by DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.errors import GenlabError


def read_image(path: Path, size: tuple[int, int], mode: str, binarize: bool = False) -> np.ndarray:
    """One image file as (C, H, W) float32 in [0, 1]; the in-memory and streamed paths both use this."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise GenlabError(f"cannot read the image '{path}': {e}. Remove or replace it.") from None
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return (a > 0.5).astype(np.float32) if binarize else a


class ImageFiles(torch.utils.data.Dataset):
    """Stands where a split's `x` tensor would: len, shape, indexing by int, slice or index tensor.

    An int gives one image (C, H, W) (what a DataLoader asks for); a slice or an index tensor gives a
    stacked batch (B, C, H, W). Nothing is held in memory but the file names.
    """

    def __init__(self, files: list[Path], size: tuple[int, int], mode: str, binarize: bool = False):
        self.files, self.size, self.mode, self.binarize = list(files), size, mode, binarize

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), 1 if self.mode == "L" else 3, self.size[1], self.size[0])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return torch.from_numpy(read_image(self.files[index], self.size, self.mode, self.binarize))
        picks = range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).tolist()
        return torch.stack([self[int(i)] for i in picks]) if len(picks) else torch.empty(0, *self.shape[1:])

    def subset(self, index) -> ImageFiles:
        picks = range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).tolist()
        return ImageFiles([self.files[i] for i in picks], self.size, self.mode, self.binarize)

    def to(self, device) -> ImageFiles:
        return self  # the files stay on disk; each batch is moved when it is read

    def loader(self, batches: list[list[int]], workers: int, pin_memory: bool):
        """Batches in the given order, decoded by `workers` processes."""
        return torch.utils.data.DataLoader(self, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory)
