"""Images larger than memory: read from disk batch by batch (by DataLoader workers) instead of held as one
tensor. Image folders decode one file per example; IDX and CIFAR-10 binary files are memory-mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genlab.errors import GenlabError


def read_image(path: Path, size: tuple[int, int], mode: str, square: bool = False) -> np.ndarray:
    """One image file as (C, H, W) float32 in [0, 1]; the in-memory and streamed paths both use this.
    square: crop the centre square first (CelebA's 178x218 faces), so resizing keeps the aspect."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if square and im.size[0] != im.size[1]:
                w, h = im.size
                side = min(w, h)
                im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            if im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise GenlabError(f"cannot read the image '{path}': {e}. Remove or replace it.") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


class LazyImages(torch.utils.data.Dataset):
    """Stands where a split's `x` tensor would: len, shape, indexing by int, slice or index tensor.

    An int gives one image (C, H, W) (what a DataLoader asks for); a slice or an index tensor gives a
    stacked batch (B, C, H, W). `finish` turns a raw (C, H, W) image into the dataset's (resizing,
    colour, static binarization), exactly as the in-memory path does to the whole array.
    """

    def __init__(self, count: int, finish: Callable[[np.ndarray], np.ndarray] | None, index=None):
        self.finish = finish
        self.index = np.arange(count) if index is None else np.asarray(index)

    def read(self, i: int) -> np.ndarray:
        """The raw image number i of the whole source, (C, H, W) float32 in [0, 1]."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self[0].shape) if len(self) else (0,)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            a = self.read(int(self.index[index]))
            return torch.from_numpy(np.ascontiguousarray(self.finish(a) if self.finish else a))
        picks = range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).tolist()
        if not len(picks):
            return torch.empty(0, *self.shape[1:])
        return torch.stack([self[int(i)] for i in picks])

    def subset(self, index) -> LazyImages:
        picks = self.index[index] if isinstance(index, slice) else self.index[torch.as_tensor(index).numpy()]
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__, index=picks)
        return clone

    def to(self, device) -> LazyImages:
        return self  # the data stays on disk; each batch is moved when it is read

    def loader(self, batches: list[list[int]], workers: int, pin_memory: bool):
        """Batches in the given order, read by `workers` processes."""
        return torch.utils.data.DataLoader(self, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory)


class ImageFiles(LazyImages):
    """A folder of image files, decoded one by one."""

    def __init__(self, files: list[Path], size: tuple[int, int], mode: str, finish=None, square: bool = False):
        super().__init__(len(files), finish)
        self.files, self.size, self.mode, self.square = list(files), size, mode, square

    def read(self, i: int) -> np.ndarray:
        return read_image(self.files[i], self.size, self.mode, self.square)


class MappedImages(LazyImages):
    """uint8 images in memory-mapped arrays (IDX, CIFAR-10 binary), one array per file, read as needed.

    `pixels(array, row)` picks one image's bytes as (C, H, W) from a row of its array.
    """

    def __init__(self, arrays: list[np.ndarray], pixels: Callable, finish=None):
        super().__init__(sum(len(a) for a in arrays), finish)
        self.arrays, self.pixels = arrays, pixels
        self.starts = np.cumsum([0] + [len(a) for a in arrays])

    def read(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.pixels(self.arrays[k], i - self.starts[k]).astype(np.float32) / 255.0
