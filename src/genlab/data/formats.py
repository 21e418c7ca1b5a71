"""File formats: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary batches, image folders, CSV/NPY/NPZ arrays."""

from __future__ import annotations

import csv
import gzip
import shutil
import zipfile
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np

from genlab.data.core import DataSpec, RawData, finish_image, n_train_for, split_by_permutation
from genlab.data.stream import ImageFiles, MappedImages, read_image
from genlab.errors import GenlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue


def load_path(path: Path, spec: DataSpec) -> RawData:
    if path.is_dir():
        return _load_folder(path, spec)
    suffix = path.name.lower()
    if suffix.endswith((".csv", ".tsv", ".txt")):
        return _split_arrays(*read_csv(path), spec)
    if suffix.endswith(".npy"):
        return _split_arrays(read_npy(path), None, spec)
    if suffix.endswith(".npz"):
        return _load_npz(path, spec)
    if "ubyte" in suffix or suffix.endswith(".idx") or suffix.endswith(".gz"):
        images = read_idx(path, mapped=True)
        _check_idx_images(images, path)
        if _streamed(images.shape, spec):
            return _split_lazy(MappedImages([images], _idx_pixels, partial(finish_image, spec=spec)), None, spec)
        return _split_arrays(idx_images(images, path), None, spec)
    if suffix.endswith(".bin"):
        records, y = read_cifar_batch(path)
        classes = _cifar_classes(path.parent, y)
        if _streamed((len(records), 3, 32, 32), spec):
            lazy = MappedImages([records], _cifar_pixels, partial(finish_image, spec=spec))
            return _split_lazy(lazy, y, spec, classes)
        return _split_arrays(_cifar_images(records), y, spec, classes=classes)
    raise GenlabError(
        f"'{path}' is not a format genlab reads: use a folder of images, IDX (*-ubyte[.gz]), "
        "CIFAR-10 binary batches (*.bin), CSV, NPY or NPZ."
    )


def _load_folder(path: Path, spec: DataSpec) -> RawData:
    files = [p for p in path.iterdir() if not p.name.startswith(".")]
    if not files:
        raise GenlabError(f"the folder '{path}' is empty: put images (or IDX/CIFAR files) in it.")
    if (path / CELEBA_ATTRIBUTES).is_file() and (path / CELEBA_IMAGES).is_dir():
        return _load_celeba(path, spec)
    idx = {_idx_role(p.name): p for p in files if _idx_role(p.name)}
    if {"train-images", "test-images"} <= set(idx):
        return _load_idx_pair(idx, path, spec)
    if any(p.name.startswith("data_batch") and p.suffix == ".bin" for p in files):
        return _load_cifar_folder(path, spec)
    if any(p.name.startswith("data_batch") and not p.suffix for p in files):
        raise GenlabError(
            f"'{path}' holds the pickled (python) version of CIFAR-10, which genlab never unpickles; "
            "use the binary version (cifar-10-binary.tar.gz, files data_batch_*.bin)."
        )
    inner = path / "cifar-10-batches-bin"
    if inner.is_dir():
        return _load_cifar_folder(inner, spec)
    return _load_image_folder(path, spec)


# ---------------------------------------------------------------------------------------------- IDX


def _streamed(shape: tuple[int, ...], spec: DataSpec) -> bool:
    """Read from disk when asked to, or (auto) when the float32 tensor would pass the memory budget."""
    if spec.stream != "auto":
        return spec.stream == "always"
    return int(np.prod(shape)) * 4 > spec.memory_budget_mb * 2**20


def _split_lazy(lazy, y, spec: DataSpec, classes=()) -> RawData:
    """The DESIGN.md split of a dataset read from disk: the same permutation as the in-memory path."""
    if spec.binarize == "dynamic":
        raise GenlabError("dynamic binarization needs the data in memory; use --binarize static or --stream never.")
    (train, ytr), (test, yte) = split_by_permutation(np.arange(len(lazy)), y, n_train_for(len(lazy), spec))
    return RawData((lazy.subset(train), ytr), (lazy.subset(test), yte), kind="image", classes=classes,
                   extra={"streamed": True})


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise GenlabError(f"cannot read '{path}': {e}.") from None


def _plain_file(path: Path) -> Path:
    """The file itself, or for gzip its decompressed copy in the cache (so that it can be memory-mapped)."""
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return path
    from genlab.data.embedded import cache_dir

    stat = path.stat()
    plain = cache_dir() / "unzipped" / f"{path.name}.{stat.st_size}.{int(stat.st_mtime)}"
    if not plain.is_file():
        plain.parent.mkdir(parents=True, exist_ok=True)
        tmp = plain.with_suffix(".tmp")
        try:
            with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise GenlabError(f"cannot read '{path}': {e}.") from None
        tmp.replace(plain)
    return plain


def read_idx(path: Path, mapped: bool = False) -> np.ndarray:
    """An IDX file (the MNIST format: magic 0 0 dtype ndim, big-endian int32 sizes, then the values).

    mapped: a read-only memory map of the values instead of a copy in memory.
    """
    source = _plain_file(path) if mapped else path
    raw = _open_maybe_gzip(path) if not mapped else source.read_bytes()[:4 + 4 * 255]
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise GenlabError(f"'{path}' is not an IDX file (its first bytes are not an IDX magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GenlabError(f"'{path}' is truncated: its IDX header is incomplete.")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", ndim, 4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    size = source.stat().st_size if mapped else len(raw)
    if size != expected:
        raise GenlabError(
            f"'{path}' is truncated or damaged: its header promises {expected} bytes, the file has {size}."
        )
    if mapped:
        return np.memmap(source, dtype, "r", offset=header, shape=shape)
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _check_idx_images(values: np.ndarray, path: Path) -> None:
    if values.ndim != 3:
        raise GenlabError(f"'{path}' holds an IDX array of shape {values.shape}, not images (N, H, W).")


def idx_images(values: np.ndarray, path: Path) -> np.ndarray:
    _check_idx_images(values, path)
    return (values.astype(np.float32) / 255.0)[:, None]


def _idx_pixels(array: np.ndarray, row: int) -> np.ndarray:
    return np.asarray(array[row])[None]


def _idx_role(name: str) -> str | None:
    name = name.lower()
    if "idx" not in name and "ubyte" not in name:
        return None
    split = "train" if name.startswith("train") else "test" if name.startswith(("t10k", "test")) else None
    what = "images" if "images" in name or "idx3" in name else "labels" if "labels" in name else None
    return f"{split}-{what}" if split and what else None


def _load_idx_pair(files: dict, folder: Path, spec: DataSpec) -> RawData:
    def part(split):
        images = read_idx(files[f"{split}-images"], mapped=True)
        _check_idx_images(images, files[f"{split}-images"])
        x = MappedImages([images], _idx_pixels, partial(finish_image, spec=spec)) if streamed else None
        if x is None:
            x = idx_images(images, files[f"{split}-images"])
        y = None
        if f"{split}-labels" in files:
            y = read_idx(files[f"{split}-labels"]).astype(np.int64)
            if y.shape != (len(x),):
                raise GenlabError(f"'{folder}': {split} labels ({len(y)}) do not match {split} images ({len(x)}).")
        return x, y

    shape = read_idx(files["train-images"], mapped=True).shape
    streamed = _streamed((shape[0] * 7 // 6, *shape[1:]), spec)  # the test images come too
    if streamed and spec.binarize == "dynamic":
        raise GenlabError("dynamic binarization needs the data in memory; use --binarize static or --stream never.")
    train, test = part("train"), part("test")
    classes = tuple(str(c) for c in range(int(train[1].max()) + 1)) if train[1] is not None else ()
    return RawData(train, test, kind="image", classes=classes, extra={"streamed": streamed})


# ---------------------------------------------------------------------------------------------- CIFAR-10


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch, memory-mapped: records of <1 x label><3072 x pixel>, channels R, G, B.

    Returns the (N, 3073) uint8 records and the (N,) labels.
    """
    source = _plain_file(path)
    size = source.stat().st_size
    if not size or size % CIFAR_RECORD:
        raise GenlabError(
            f"'{path}' is not a CIFAR-10 binary batch: its size ({size} bytes) is not a multiple "
            f"of {CIFAR_RECORD}-byte records."
        )
    records = np.memmap(source, np.uint8, "r", shape=(size // CIFAR_RECORD, CIFAR_RECORD))
    labels = np.asarray(records[:, 0]).astype(np.int64)
    if labels.max() > 9:
        raise GenlabError(f"'{path}' is not a CIFAR-10 binary batch: it has labels above 9.")
    return records, labels


def _cifar_images(records: np.ndarray) -> np.ndarray:
    return np.asarray(records[:, 1:]).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0


def _cifar_pixels(records: np.ndarray, row: int) -> np.ndarray:
    return np.asarray(records[row, 1:]).reshape(3, 32, 32)


def _cifar_classes(folder: Path, labels: np.ndarray) -> tuple[str, ...]:
    names = folder / "batches.meta.txt"
    if names.is_file():
        listed = [line.strip() for line in names.read_text().splitlines() if line.strip()]
        if len(listed) >= 10:
            return tuple(listed[:10])
    return tuple(str(c) for c in range(10))


def _load_cifar_folder(folder: Path, spec: DataSpec) -> RawData:
    train_files = sorted(folder.glob("data_batch_*.bin"))
    test_file = folder / "test_batch.bin"
    if not train_files or not test_file.is_file():
        raise GenlabError(f"'{folder}' needs data_batch_*.bin and test_batch.bin (CIFAR-10 binary version).")
    parts = [read_cifar_batch(p) for p in train_files]
    test_records, test_labels = read_cifar_batch(test_file)
    labels = np.concatenate([p[1] for p in parts])
    classes = _cifar_classes(folder, labels)
    if _streamed((len(labels) + len(test_labels), 3, 32, 32), spec):
        if spec.binarize == "dynamic":
            raise GenlabError("dynamic binarization needs the data in memory; use --binarize static or --stream never.")
        finish = partial(finish_image, spec=spec)
        train = MappedImages([p[0] for p in parts], _cifar_pixels, finish)
        test = MappedImages([test_records], _cifar_pixels, finish)
        return RawData((train, labels), (test, test_labels), kind="image", classes=classes, extra={"streamed": True})
    train = (np.concatenate([_cifar_images(p[0]) for p in parts]), labels)
    return RawData(train, (_cifar_images(test_records), test_labels), kind="image", classes=classes)


# ---------------------------------------------------------------------------------------------- images


def _load_image_folder(folder: Path, spec: DataSpec) -> RawData:
    """A folder of images; class subfolders become labels (sorted by name)."""
    from PIL import Image, UnidentifiedImageError

    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        entries = [(f, label) for label, d in enumerate(subdirs) for f in sorted(d.rglob("*")) if _is_image(f)]
        classes = tuple(d.name for d in subdirs)
    else:
        entries = [(f, None) for f in sorted(folder.iterdir()) if _is_image(f)]
        classes = ()
    if not entries:
        raise GenlabError(
            f"no images found in '{folder}': genlab reads {', '.join(sorted(IMAGE_SUFFIXES))} files, "
            "directly in the folder or in one subfolder per class."
        )
    headers = []
    for f, _ in entries:  # opening reads only the header: mode and size
        try:
            with Image.open(f) as im:
                headers.append((im.mode, im.size))
        except (UnidentifiedImageError, OSError) as e:
            raise GenlabError(f"cannot read the image '{f}': {e}. Remove or replace it.") from None
    color = spec.color
    if color == "auto":
        color = "gray" if all(m in ("1", "L", "LA", "I", "I;16", "F") for m, _ in headers) else "rgb"
    size = (spec.size, spec.size) if spec.size else Counter(s for _, s in headers).most_common(1)[0][0]
    mode = "L" if color == "gray" else "RGB"
    y = np.array([label for _, label in entries], dtype=np.int64) if classes else None
    files = [f for f, _ in entries]
    if _streamed((len(files), 1 if mode == "L" else 3, size[1], size[0]), spec):
        raw = _split_lazy(ImageFiles(files, size, mode, partial(finish_image, spec=spec)), y, spec, classes)
    else:
        raw = _split_arrays(np.stack([read_image(f, size, mode) for f in files]), y, spec, classes=classes,
                            kind="image")
    return _with_groups(raw, folder / GROUPS_FILE, len(files), spec)


GROUPS_FILE = "groups.csv"


def _with_groups(raw: RawData, path: Path, n: int, spec: DataSpec) -> RawData:
    """groups.csv beside the images (index,group; index = position in the sorted listing, class folder by
    class folder): group ids for audits, never used for training, split like the images."""
    if not path.is_file():
        return raw
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r]
    if rows and not rows[0][0].strip().isdigit():  # a header row
        rows = rows[1:]
    try:
        pairs = [(int(r[0]), int(r[1])) for r in rows]
    except (ValueError, IndexError) as e:
        raise GenlabError(f"'{path}' must have integer index,group rows ({e}).") from None
    groups = np.full(n, -1, dtype=np.int64)
    for i, g in pairs:
        if not 0 <= i < n or g < 0:
            raise GenlabError(f"'{path}': index {i} or group {g} is out of range (indices 0..{n - 1}, groups >= 0).")
        groups[i] = g
    if (groups < 0).any():
        raise GenlabError(f"'{path}' gives no group for {int((groups < 0).sum())} of the {n} images.")
    (gtr, _), (gte, _) = split_by_permutation(groups, None, n_train_for(n, spec))
    raw.extra["groups"] = (gtr, gte)
    return raw


CELEBA_ATTRIBUTES, CELEBA_IMAGES = "list_attr_celeba.txt", "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"


def _load_celeba(folder: Path, spec: DataSpec) -> RawData:
    """CelebA's layout: img_align_celeba/*.jpg, list_attr_celeba.txt (a count line, the 40 attribute names, then
    'file v1 ... v40' with values -1/1), optional list_eval_partition.txt ('file 0|1|2'; 2 = test, the rest train).
    Label = `attribute` (default Smiling), group = `group_attribute` (default Pale_Skin, for audits only);
    faces are centre-cropped to a square and resized to `size` (default 64)."""
    attribute, group_attribute = spec.attribute or "Smiling", spec.group_attribute or "Pale_Skin"
    lines = [line.split() for line in (folder / CELEBA_ATTRIBUTES).read_text().splitlines() if line.strip()]
    if len(lines) < 3:
        raise GenlabError(f"'{folder / CELEBA_ATTRIBUTES}' has no rows: it should list attributes per image.")
    names = lines[1]
    for a in (attribute, group_attribute):
        if a not in names:
            raise GenlabError(f"CelebA has no attribute '{a}'; known: {', '.join(names)}.")
    rows = lines[2:]
    try:
        files = [folder / CELEBA_IMAGES / r[0] for r in rows]
        values = np.array([[int(v) for v in r[1:]] for r in rows])
    except ValueError as e:
        raise GenlabError(f"'{folder / CELEBA_ATTRIBUTES}' has a value that is not -1 or 1 ({e}).") from None
    if values.shape[1] != len(names):
        raise GenlabError(f"'{folder / CELEBA_ATTRIBUTES}': rows have {values.shape[1]} values for {len(names)} names.")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise GenlabError(f"{len(missing)} image(s) listed in {CELEBA_ATTRIBUTES} are missing, e.g. '{missing[0]}'.")
    y = (values[:, names.index(attribute)] > 0).astype(np.int64)
    g = (values[:, names.index(group_attribute)] > 0).astype(np.int64)
    partition = folder / CELEBA_PARTITION
    if partition.is_file():
        split_of = {r[0]: int(r[1]) for r in (line.split() for line in partition.read_text().splitlines()) if r}
        test = np.array([split_of.get(f.name, 0) == 2 for f in files])
        if test.all() or not test.any():
            raise GenlabError(f"'{partition}' leaves an empty train or test split.")
        train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    else:
        perm = np.random.RandomState(0).permutation(len(files))
        n_train = n_train_for(len(files), spec)
        train_idx, test_idx = perm[:n_train], perm[n_train:]
    side = spec.size or 64
    mode = "L" if spec.color == "gray" else "RGB"
    classes = (f"not {attribute}", attribute)
    extra = {"groups": (g[train_idx], g[test_idx]), "group_names": (f"not {group_attribute}", group_attribute)}
    lazy = ImageFiles(files, (side, side), mode, partial(finish_image, spec=spec), square=True)
    if _streamed((len(files), 1 if mode == "L" else 3, side, side), spec):
        return RawData((lazy.subset(train_idx), y[train_idx]), (lazy.subset(test_idx), y[test_idx]), kind="image",
                       classes=classes, extra={**extra, "streamed": True})
    x = np.stack([read_image(f, (side, side), mode, square=True) for f in files])
    return RawData((x[train_idx], y[train_idx]), (x[test_idx], y[test_idx]), kind="image", classes=classes,
                   extra=extra)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# ---------------------------------------------------------------------------------------------- arrays

LABEL_COLUMNS = ("label", "labels", "y", "class", "target")


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric CSV; an optional header row, and a column named label/y/class/target becomes labels."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GenlabError(f"cannot read '{path}' as text: {e}.") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise GenlabError(f"'{path}' is empty: it needs one row per example and one column per feature.")
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip().lower() for c in rows[0]], rows[1:]
    if not rows:
        raise GenlabError(f"'{path}' has a header but no data rows.")
    width = len(rows[0])
    values = np.empty((len(rows), width), np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise GenlabError(f"'{path}' line {i + 1 + (header is not None)}: {len(row)} columns, expected {width}.")
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise GenlabError(
                f"'{path}' line {i + 1 + (header is not None)} has a value that is not a number: {row!r}."
            ) from None
    labels = None
    if header is not None:
        label_cols = [j for j, name in enumerate(header) if name in LABEL_COLUMNS]
        if label_cols:
            j = label_cols[0]
            labels = values[:, j].astype(np.int64)
            values = np.delete(values, j, axis=1)
    if values.shape[1] == 0:
        raise GenlabError(f"'{path}' has no feature columns besides its labels.")
    return values.astype(np.float32), labels


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise GenlabError(f"cannot read '{path}' as a .npy array: it does not start with the NPY magic bytes.")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise GenlabError(f"'{path}' cannot be loaded without unpickling ({e}); save a plain numeric array.") from None
    except (OSError, EOFError) as e:
        raise GenlabError(f"cannot read '{path}' as a .npy array: {e}.") from None


def _load_npz(path: Path, spec: DataSpec) -> RawData:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise GenlabError(f"cannot read '{path}' as a .npz archive of numeric arrays: {e}.") from None
    if "x_train" in arrays and "x_test" in arrays:
        train = (_as_examples(arrays["x_train"], path), arrays.get("y_train"))
        test = (_as_examples(arrays["x_test"], path), arrays.get("y_test"))
        return RawData(train, test, kind=_kind_of(train[0]), classes=_classes(train[1]))
    key = next((k for k in ("x", "X", "data", "images") if k in arrays), None)
    if key is None and len(arrays) == 1:
        key = next(iter(arrays))
    if key is None:
        raise GenlabError(
            f"'{path}' needs an array named x (and optionally y), or x_train/x_test; it has {list(arrays)}."
        )
    labels = next((arrays[k] for k in ("y", "labels", "label", "targets") if k in arrays), None)
    return _split_arrays(arrays[key], labels, spec)


def _as_examples(x: np.ndarray, path: Path) -> np.ndarray:
    """(N, D) tabular, or images given as (N, H, W), (N, C, H, W) or (N, H, W, C) with C in 1, 3."""
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise GenlabError(f"'{path}' holds {x.dtype} values; genlab needs real numbers.")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / scale
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise GenlabError(
        f"'{path}' holds an array of shape {x.shape}; use (N, D) for tabular data or (N, H, W), (N, C, H, W), "
        "(N, H, W, C) for images."
    )


def _kind_of(x: np.ndarray) -> str:
    return "image" if x.ndim == 4 else "tabular"


def _classes(y) -> tuple[str, ...]:
    return () if y is None else tuple(str(c) for c in range(int(np.max(y)) + 1))


def _split_arrays(x, y, spec: DataSpec, classes=None, kind=None) -> RawData:
    x = x if kind == "image" else _as_examples(np.asarray(x), Path(spec.name))
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),):
            raise GenlabError(f"'{spec.name}': {len(y)} labels for {len(x)} examples.")
        y = y.astype(np.int64)
    kind = kind or _kind_of(x)
    train, test = split_by_permutation(x, y, n_train_for(len(x), spec))
    return RawData(train, test, kind=kind, classes=classes if classes is not None else _classes(y))
