"""The `Dataset` every tool takes, the spec a run saves to rebuild it, and `load_dataset`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from genlab.configs import build_config, require, whole
from genlab.errors import GenlabError

Binarize = Literal["none", "static", "dynamic"]
BINARIZE = get_args(Binarize)
Color = Literal["auto", "gray", "rgb"]
COLORS = get_args(Color)
Stream = Literal["auto", "always", "never"]
STREAM = get_args(Stream)


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    kind: str  # "image" | "tabular" | "points"
    shape: tuple[int, ...]  # one example: (C, H, W) for images, (D,) otherwise
    classes: tuple[str, ...] = ()  # class names when the data has labels
    factors: tuple[str, ...] = ()  # names of the known generating factors (procedural data)
    binarize: str = "none"
    translate: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    hflip: bool = False
    loc: tuple[float, ...] | None = None  # standardisation of tabular data (train mean, std)
    std: tuple[float, ...] | None = None
    groups: tuple[str, ...] = ()  # names of the group ids (hidden nuisances), for reports only


@dataclass
class Split:
    x: torch.Tensor  # float32; images (N, C, H, W) in [0, 1], otherwise (N, D)
    y: torch.Tensor | None = None  # (N,) int64 labels
    group: torch.Tensor | None = None  # (N,) int64 nuisance/group ids
    factors: torch.Tensor | None = None  # (N, F) int64 values of known generating factors

    def __post_init__(self):  # numpy arrays given by hand become the tensors the trainer indexes
        if isinstance(self.x, np.ndarray):
            self.x = torch.from_numpy(np.ascontiguousarray(self.x, dtype=np.float32))
        for name in ("y", "group", "factors"):
            if isinstance(getattr(self, name), np.ndarray):
                setattr(self, name, torch.from_numpy(np.asarray(getattr(self, name), dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> Split:
        pick = lambda t: None if t is None else t.subset(index) if hasattr(t, "subset") else t[index]  # noqa: E731
        return Split(self.x[index], pick(self.y), pick(self.group), pick(self.factors))


@dataclass
class Dataset:
    train: Split
    test: Split
    meta: DatasetMeta
    spec: DataSpec | None = None

    def describe(self) -> str:
        """One line on what was loaded: the examples of each split, their shape and kind, classes and groups."""
        meta = self.meta
        classes = f", {len(meta.classes)} classes" if meta.classes else ", no labels"
        groups = f", {int(self.train.group.max()) + 1} groups" if self.train.group is not None else ""
        return (f"{meta.name}: {len(self.train):,} train / {len(self.test):,} test {meta.kind} examples of shape "
                f"{tuple(meta.shape)}{classes}{groups}")

    def split(self, name: str) -> Split:
        """"train", "test", or "all": the training split followed by the test split (read into memory)."""
        if name == "all":
            train, test = self.train, self.test
            return Split(*(_joined(getattr(train, f), getattr(test, f)) for f in ("x", "y", "group", "factors")))
        if name not in ("train", "test"):
            raise GenlabError(f"unknown split '{name}': use 'train', 'test' or 'all'.")
        return getattr(self, name)


def _joined(first, second) -> torch.Tensor | None:
    """Two splits' tensors (or streams, read into memory) one after the other; None when either has none."""
    if first is None or second is None:
        return None
    return torch.cat([torch.as_tensor(first[:]), torch.as_tensor(second[:])])


@dataclass(frozen=True)
class DataSpec:
    """What a run saves to rebuild its data: a name or path plus the loading options."""

    name: str
    binarize: Binarize = "none"  # none | static (x > 0.5) | dynamic (a Bernoulli draw per epoch)
    size: int | None = None  # resize images to size x size
    color: Color = "auto"  # auto | gray | rgb
    test_fraction: float = 0.2  # for files without an official test split
    standardize: bool | None = None  # tabular data to zero mean, unit variance (None: yes for tabular)
    translate: int = 0  # training images shifted by up to this many pixels, drawn anew for every batch
    rotate: float = 0.0  # training images rotated by up to this many degrees either way
    scale: float = 0.0  # training images scaled by a factor in [1 - scale, 1 + scale]
    hflip: bool = False  # training images mirrored left-right with probability 1/2 (off for digits)
    stream: Stream = "auto"  # image folders: auto (from disk when larger than the budget) | always | never
    memory_budget_mb: int = 2048  # in-memory size above which `auto` streams
    attribute: str | None = None  # CelebA: the attribute that becomes the label (default Smiling)
    group_attribute: str | None = None  # CelebA: the attribute that names the groups, for audits (default Pale_Skin)

    def __post_init__(self):
        require(self.binarize in BINARIZE, f"binarize must be one of {', '.join(BINARIZE)}, not '{self.binarize}'")
        require(self.color in COLORS, f"color must be one of {', '.join(COLORS)}, not '{self.color}'")
        require(self.size is None or whole(self.size, 2, 1024),
                f"size must be an image side between 2 and 1024 pixels, not {self.size!r}")
        require(whole(self.translate, 0, 8), f"translate must be a pixel count from 0 to 8, not {self.translate!r}")
        require(0 <= self.rotate <= 180, f"rotate must be an angle from 0 to 180 degrees, not {self.rotate}")
        require(self.stream in STREAM, f"stream must be one of {', '.join(STREAM)}, not '{self.stream}'")
        require(whole(self.memory_budget_mb, 1),
                f"memory_budget_mb must be a positive integer, not {self.memory_budget_mb!r}")
        require(0 <= self.scale < 1, f"scale must be in [0, 1), not {self.scale}")
        require(0.0 < self.test_fraction < 1.0, f"test_fraction must be between 0 and 1, not {self.test_fraction}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataSpec:
        return build_config(cls, values, "data")


# ---------------------------------------------------------------------------------------------- registry


def split_by_permutation(x: np.ndarray, y: np.ndarray | None, n_train: int):
    """The DESIGN.md split: perm = RandomState(0).permutation(N); train = perm[:n_train]."""
    perm = np.random.RandomState(0).permutation(len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return (x[tr], None if y is None else y[tr]), (x[te], None if y is None else y[te])


@dataclass
class RawData:
    """What a builder or file loader hands back, before the common options are applied."""

    train: tuple  # (x, y or None[, factors]), numpy; images (N, C, H, W) float in [0, 1]
    test: tuple
    kind: str
    classes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def n_train_for(n: int, spec: DataSpec) -> int:
    n_test = max(1, int(round(n * spec.test_fraction)))
    if n - n_test < 1:
        raise GenlabError(f"the data has only {n} example(s): at least 2 are needed for a train and test split.")
    return n - n_test


def finish(raw: RawData, spec: DataSpec) -> Dataset:
    """A Dataset from raw arrays and the options every dataset shares (binarize, standardize, augmentations)."""
    if raw.extra.get("streamed"):
        return _finish_streamed(raw, spec)
    (xtr, ytr, *ftr), (xte, yte, *fte) = raw.train, raw.test
    dtype = np.float32 if raw.kind == "image" else np.float64  # a table becomes float32 after standardising
    xtr, xte = np.asarray(xtr, dtype=dtype), np.asarray(xte, dtype=dtype)
    for split, x in (("train", xtr), ("test", xte)):
        if len(x) == 0:
            raise GenlabError(f"the {split} split of '{spec.name}' is empty: the data has too few examples.")
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
            raise GenlabError(
                f"'{spec.name}' holds NaN or infinite values in {bad} {split} example(s); clean or drop them first."
            )
    kind = raw.kind
    if kind == "image":
        xtr, xte = _reshape_images(xtr, spec), _reshape_images(xte, spec)
    if spec.binarize != "none":
        if kind != "image":
            raise GenlabError(f"binarize={spec.binarize} applies to images, but '{spec.name}' is {kind} data.")
        if xtr.min() < 0 or xtr.max() > 1:
            raise GenlabError(f"binarize needs pixel values in [0, 1]; '{spec.name}' has values outside it.")
    if spec.binarize == "static":
        xtr, xte = (xtr > 0.5).astype(np.float32), (xte > 0.5).astype(np.float32)
    elif spec.binarize == "dynamic":
        # train stays grey and is drawn anew each epoch (`augment`); the test set is drawn once, fixed
        xte = (np.random.RandomState(0).random_sample(xte.shape) < xte).astype(np.float32)
    loc = spread = None
    standardize = spec.standardize if spec.standardize is not None else kind == "tabular"
    if standardize:
        if kind == "image":
            raise GenlabError("standardize applies to tabular data and points, not to images.")
        # in float64, each column first divided by its largest size: 1e30 overflows float32 and 1e200 squared
        # overflows float64, a column scaled to [-1, 1] neither
        size = np.abs(xtr).max(0)
        size = np.where(size > 0, size, 1.0)
        unit_tr, unit_te = xtr / size, xte / size
        mean, std = unit_tr.mean(0), unit_tr.std(0)
        std = np.where(std > 0, std, 1.0)
        xtr, xte = (unit_tr - mean) / std, (unit_te - mean) / std
        loc, spread = tuple(float(v) for v in mean * size), tuple(float(v) for v in std * size)
    if xtr.dtype != np.float32:
        if not (np.isfinite(xtr).all() and np.isfinite(xte).all()):
            raise GenlabError(f"'{spec.name}' holds values too large to standardise; rescale the columns.")
        largest = max(float(np.abs(xtr).max()), float(np.abs(xte).max()))
        if largest > float(np.finfo(np.float32).max):
            raise GenlabError(f"'{spec.name}' holds values as large as {largest:.3g}, beyond 32-bit floats "
                              "(3.4e38); standardize it (standardize true) or rescale the columns.")
        xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)
    if kind != "image" and any((spec.translate, spec.rotate, spec.scale, spec.hflip)):
        raise GenlabError(f"translate, rotate, scale and hflip apply to images, but '{spec.name}' is {kind} data.")
    meta = _meta(spec, raw, kind, tuple(xtr.shape[1:]), loc=loc, std=spread)

    def to_split(x, y, factors, group):
        as_long = lambda a: None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
        x = torch.from_numpy(np.ascontiguousarray(x))
        return Split(x, as_long(y), as_long(group), as_long(factors[0] if factors else None))

    groups = raw.extra.get("groups", (None, None))  # (train, test) group ids, never used for training
    return Dataset(to_split(xtr, ytr, ftr, groups[0]), to_split(xte, yte, fte, groups[1]), meta, spec)


def _finish_streamed(raw: RawData, spec: DataSpec) -> Dataset:
    """An image folder read from disk batch by batch: size, colour and static binarization are applied
    per file as it is read; the split is the in-memory path's."""
    (xtr, ytr), (xte, yte) = raw.train, raw.test
    for split, x in (("train", xtr), ("test", xte)):
        if len(x) == 0:
            raise GenlabError(f"the {split} split of '{spec.name}' is empty: the data has too few examples.")
    meta = _meta(spec, raw, "image", tuple(xtr.shape[1:]))
    as_long = lambda a: None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
    gtr, gte = raw.extra.get("groups", (None, None))
    return Dataset(Split(xtr, as_long(ytr), as_long(gtr)), Split(xte, as_long(yte), as_long(gte)), meta, spec)


def _meta(spec: DataSpec, raw: RawData, kind: str, shape: tuple[int, ...], loc=None, std=None) -> DatasetMeta:
    return DatasetMeta(
        name=Path(spec.name).name if Path(spec.name).is_absolute() else spec.name,  # a path is made absolute
        kind=kind,
        shape=shape,
        classes=raw.classes,
        factors=tuple(raw.extra.get("factor_names", ())),
        binarize=spec.binarize,
        translate=spec.translate,
        rotate=spec.rotate,
        scale=spec.scale,
        hflip=spec.hflip,
        loc=loc,
        std=std,
        groups=tuple(raw.extra.get("group_names", ())),
    )


def to_data_units(x, meta) -> np.ndarray:
    """Model inputs (or samples) back in the data's own units: a standardised table times its training std
    plus its mean, in float64 (a column of 1e300 overflows float32); anything else as it is. (N, ...)"""
    x = torch.as_tensor(x).double().numpy() if not isinstance(x, np.ndarray) else x.astype(np.float64)
    loc = meta.get("loc") if isinstance(meta, dict) else getattr(meta, "loc", None)
    if loc is None:
        return x
    std = meta["std"] if isinstance(meta, dict) else meta.std
    return x.reshape(len(x), -1) * np.asarray(std) + np.asarray(loc)


def finish_image(a: np.ndarray, spec: DataSpec) -> np.ndarray:
    """One raw (C, H, W) image as the dataset holds it: what `finish` does to the whole array, for one
    image read from disk (colour, size, static binarization)."""
    a = _reshape_images(a[None], spec)[0]
    return (a > 0.5).astype(np.float32) if spec.binarize == "static" else a


def _reshape_images(x: np.ndarray, spec: DataSpec) -> np.ndarray:
    """Apply the size and color options to (N, C, H, W) images that a format loader returned."""
    if spec.color == "gray" and x.shape[1] == 3:
        x = (x * np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]).sum(1, keepdims=True)
    elif spec.color == "rgb" and x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    if spec.size is not None and x.shape[2:] != (spec.size, spec.size):
        t = torch.nn.functional.interpolate(
            torch.from_numpy(x), size=(spec.size, spec.size), mode="bilinear", antialias=True, align_corners=False
        )
        x = t.clamp(0, 1).numpy()
    return x


def augment(x: torch.Tensor, meta: DatasetMeta) -> torch.Tensor:
    """What a training batch looks like this time: random shifts, a fresh Bernoulli draw for dynamic
    binarization. Draws from torch's global RNG (saved in checkpoints). Never applied to validation or test data.
    """
    if meta.rotate or meta.scale:
        x = random_rotate_scale(x, meta.rotate, meta.scale)
        if meta.binarize == "static":  # interpolation made grey pixels: back to the binarized data's values
            x = (x > 0.5).to(x.dtype)
    if meta.translate:
        x = random_translate(x, meta.translate)
    if meta.hflip:
        flip = torch.rand(len(x), device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if meta.binarize == "dynamic":
        x = torch.bernoulli(x)
    return x


def random_rotate_scale(x: torch.Tensor, max_degrees: float, max_scale: float) -> torch.Tensor:
    """Rotate each image (B, C, H, W) by its own angle in [-max_degrees, max_degrees] and zoom by a factor
    in [1 - max_scale, 1 + max_scale] about the centre (bilinear, zeros outside)."""
    b = len(x)
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(max_degrees)
    zoom = 1 + (torch.rand(b, device=x.device) * 2 - 1) * max_scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # the grid maps output to input coordinates
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_translate(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each image (B, C, H, W) by its own (dy, dx) in [-max_shift, max_shift], filling with zeros."""
    b, c, h, w = x.shape
    t = max_shift
    padded = torch.nn.functional.pad(x, (t, t, t, t))
    dy, dx = (torch.randint(-t, t + 1, (2, b), device=x.device) + t).unbind(0)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, None, :, None]  # (B, 1, H, 1)
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]
