"""Images larger than memory: read from disk batch by batch (by DataLoader workers) instead of held as one
tensor. Image folders decode one file per example; IDX and CIFAR-10 binary files are memory-mapped.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from genlab.errors import GenlabError

# the only formats an image file is decoded as, whatever its bytes claim (Pillow would otherwise hand a
# PostScript file named x.png to Ghostscript)
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP"}
# single-channel modes deeper than 8 bits, and what divides their values into [0, 1]; Pillow's conversion to
# 8-bit "L" would clip them instead (a 16-bit PNG opens as I;16, or as I in older Pillows)
DEEP_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1}
GREY_MODES = ("1", "L", "LA", *DEEP_MODES)


@contextmanager
def open_image(path: Path) -> Iterator:
    """Pillow's image of `path`, read only as one of IMAGE_FORMATS; a damaged file or a decompression bomb
    (even one only past Pillow's warning limit) becomes a GenlabError naming the file, here or in the `with` body."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=sorted(set(IMAGE_FORMATS.values()))) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise GenlabError(f"the image '{path}' is too large to decode safely ({str(e).rstrip('.')}); "
                          "remove it or shrink it.") from None
    except (OSError, ValueError, EOFError, SyntaxError, struct.error) as e:  # what damaged files raise in Pillow
        raise GenlabError(f"cannot read the image '{path}': {str(e).rstrip('.')}. Remove or replace it.") from None


def read_image(path: Path, size: tuple[int, int], mode: str, square: bool = False) -> np.ndarray:
    """One image file as (C, H, W) float32 in [0, 1]; the in-memory and streamed paths both use this.
    mode: "L" or "RGB" (a deep grey image is scaled, then repeated for RGB).
    square: crop the centre square first (CelebA's 178x218 faces), so resizing keeps the aspect."""
    from PIL import Image

    with open_image(path) as im:
        deep = im.mode in DEEP_MODES
        if deep:  # to float in [0, 1] (mode F) before any conversion could clip it
            im = Image.fromarray(np.asarray(im, np.float32) / DEEP_MODES[im.mode])
        else:
            im = im.convert(mode)
        if square and im.size[0] != im.size[1]:
            w, h = im.size
            side = min(w, h)
            im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        if im.size != size:
            im = im.resize(size, Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.float32)
    a = np.clip(a, 0, 1) if deep else a / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return np.repeat(a, 3, axis=0) if mode == "RGB" and len(a) == 1 else a


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
    """Images in memory-mapped arrays (IDX, CIFAR-10 binary), one array per file, read as needed.

    `pixels(array, row)` picks one image's values as (C, H, W) from a row of its array; `divisor` brings them
    into [0, 1] (255 for bytes).
    """

    def __init__(self, arrays: list[np.ndarray], pixels: Callable, finish=None, divisor: float = 255.0):
        super().__init__(sum(len(a) for a in arrays), finish)
        self.arrays, self.pixels, self.divisor = arrays, pixels, divisor
        self.starts = np.cumsum([0] + [len(a) for a in arrays])

    def read(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.pixels(self.arrays[k], i - self.starts[k]).astype(np.float32) / self.divisor
