"""File formats: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary batches, image folders, CSV/NPY/NPZ arrays."""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import shutil
import warnings
import zipfile
import zlib
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np

from genlab.data.core import DataSpec, RawData, finish_image, n_train_for, split_by_permutation
from genlab.data.stream import GREY_MODES, IMAGE_FORMATS, ImageFiles, MappedImages, open_image, read_image
from genlab.errors import GenlabError
from genlab.files import write_atomic

IMAGE_SUFFIXES = set(IMAGE_FORMATS)
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
        images = read_idx(path)
        divisor = _idx_divisor(images, path)
        if _streamed(images.shape, spec):
            lazy = MappedImages([images], _idx_pixels, partial(finish_image, spec=spec), divisor)
            return _split_lazy(lazy, None, spec)
        return _split_arrays(_idx_images(images, divisor), None, spec)
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


def _plain_file(path: Path) -> Path:
    """The file itself, or for gzip its decompressed copy in the cache (so that it can be memory-mapped), named
    by the sha256 of the compressed bytes: another file of the same name, size and date never gets this copy."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return path
            f.seek(0)
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise GenlabError(f"cannot read '{path}': {e}.") from None
    from genlab.data.embedded import cache_dir

    plain = cache_dir() / "unzipped" / digest.hexdigest()
    if not plain.is_file():
        plain.parent.mkdir(parents=True, exist_ok=True)

        def unzip(tmp: Path) -> None:
            with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)

        try:
            write_atomic(plain, unzip)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise GenlabError(f"cannot unzip '{path}': {e}.") from None
    return plain


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: magic 0 0 dtype ndim, big-endian uint32 sizes, then the values), as a
    read-only memory map; a gzipped file is mapped from its decompressed copy in the cache."""
    source = _plain_file(path)
    with open(source, "rb") as f:
        head = f.read(4 + 4 * 255)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_DTYPES:
        raise GenlabError(f"'{path}' is not an IDX file (its first bytes are not an IDX magic number).")
    ndim = head[3]
    header = 4 + 4 * ndim
    if len(head) < header:
        raise GenlabError(f"'{path}' is truncated: its IDX header is incomplete.")
    shape = tuple(int(v) for v in np.frombuffer(head, ">u4", ndim, 4))
    dtype = np.dtype(IDX_DTYPES[head[2]])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: a lying header cannot overflow
    size = source.stat().st_size
    if size != expected:
        raise GenlabError(
            f"'{path}' is truncated or damaged: its header promises {expected} bytes, the file has {size}."
        )
    if not shape or 0 in shape:
        raise GenlabError(f"'{path}' holds an IDX array of shape {shape}: no examples.")
    return np.memmap(source, dtype, "r", offset=header, shape=shape)


def pixel_divisor(values: np.ndarray, where) -> float:
    """What divides stored pixel values into [0, 1]: 255 for uint8, 65535 for uint16, 1 for floats, which must
    lie in [0, 1] already (checked over every value). Signed integers are refused: their range does not say
    where white is."""
    if values.dtype.kind == "u" and values.dtype.itemsize <= 2:
        return float(np.iinfo(values.dtype).max)
    if values.dtype.kind == "f":
        if values.size and not (values.min() >= 0 and values.max() <= 1):  # NaN fails both
            raise GenlabError(f"'{where}' holds float pixels outside [0, 1] (or NaN); scale them to [0, 1] first.")
        return 1.0
    raise GenlabError(
        f"'{where}' stores pixels as {values.dtype.name}; genlab reads uint8 (0..255), uint16 or floats in [0, 1]."
    )


def _idx_divisor(values: np.ndarray, path: Path) -> float:
    if values.ndim != 3:
        raise GenlabError(f"'{path}' holds an IDX array of shape {values.shape}, not images (N, H, W).")
    return pixel_divisor(values, path)


def _idx_pixels(array: np.ndarray, row: int) -> np.ndarray:
    return np.asarray(array[row])[None]


def _idx_images(array: np.ndarray, divisor: float) -> np.ndarray:
    """An (N, H, W) IDX array as (N, 1, H, W) float32 in [0, 1]."""
    return (np.asarray(array, np.float32) / divisor)[:, None]


def _idx_role(name: str) -> str | None:
    name = name.lower()
    if "idx" not in name and "ubyte" not in name:
        return None
    split = "train" if name.startswith("train") else "test" if name.startswith(("t10k", "test")) else None
    what = "images" if "images" in name or "idx3" in name else "labels" if "labels" in name else None
    return f"{split}-{what}" if split and what else None


def _load_idx_pair(files: dict, folder: Path, spec: DataSpec) -> RawData:
    images = {split: read_idx(files[f"{split}-images"]) for split in ("train", "test")}
    divisor = {split: _idx_divisor(a, files[f"{split}-images"]) for split, a in images.items()}
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise GenlabError(f"'{folder}': train images are {images['train'].shape[1:]} but test images "
                          f"{images['test'].shape[1:]}; both need the same size.")
    streamed = _streamed((len(images["train"]) + len(images["test"]), *images["train"].shape[1:]), spec)
    if streamed and spec.binarize == "dynamic":
        raise GenlabError("dynamic binarization needs the data in memory; use --binarize static or --stream never.")
    x = {split: MappedImages([a], _idx_pixels, partial(finish_image, spec=spec), divisor[split]) if streamed
         else _idx_images(a, divisor[split]) for split, a in images.items()}
    labels = _pair(files, ("train-labels", "test-labels"), folder)
    y, classes = (None, None), ()
    if labels:
        y, classes = class_labels([read_idx(f) for f in labels], [len(a) for a in images.values()], folder)
    return RawData((x["train"], y[0]), (x["test"], y[1]), kind="image", classes=classes,
                   extra={"streamed": streamed})


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
        listed = [line.strip() for line in read_text(names).splitlines() if line.strip()]
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
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [f for f in sorted(folder.iterdir()) if _is_image(f)]
    if subdirs and loose:  # which did the user mean? never drop either silently
        raise GenlabError(
            f"'{folder}' holds {len(loose)} image(s) directly (such as '{loose[0].name}') and class subfolders "
            f"({', '.join(d.name for d in subdirs[:5])}); put every image in a class subfolder, or remove the "
            "subfolders."
        )
    if subdirs:
        entries = [(f, label) for label, d in enumerate(subdirs) for f in sorted(d.rglob("*")) if _is_image(f)]
        classes = tuple(d.name for d in subdirs)
    else:
        entries = [(f, None) for f in loose]
        classes = ()
    if not entries:
        raise GenlabError(
            f"no images found in '{folder}': genlab reads {', '.join(sorted(IMAGE_SUFFIXES))} files, "
            "directly in the folder or in one subfolder per class."
        )
    headers = []
    for f, _ in entries:  # opening reads only the header: mode and size
        with open_image(f) as im:
            headers.append((im.mode, im.size))
    color = spec.color
    if color == "auto":
        color = "gray" if all(m in GREY_MODES for m, _ in headers) else "rgb"
    size = (spec.size, spec.size) if spec.size else Counter(s for _, s in headers).most_common(1)[0][0]
    mode = "L" if color == "gray" else "RGB"
    y = np.array([label for _, label in entries], dtype=np.int64) if classes else None
    files = [f for f, _ in entries]
    if _streamed((len(files), 1 if mode == "L" else 3, size[1], size[0]), spec):
        raw = _split_lazy(ImageFiles(files, size, mode, partial(finish_image, spec=spec)), y, spec, classes)
    else:
        raw = _split_arrays(np.stack([read_image(f, size, mode) for f in files]), y, spec, classes=classes,
                            kind="image")
    return _with_groups(raw, _read_groups_csv(folder / GROUPS_FILE, len(files)), spec)


GROUPS_FILE = "groups.csv"


def _with_groups(raw: RawData, groups: np.ndarray | None, spec: DataSpec) -> RawData:
    """Group ids of all examples (None: none), split like them: for audits, never used for training."""
    if groups is not None:
        (gtr, _), (gte, _) = split_by_permutation(groups, None, n_train_for(len(groups), spec))
        raw.extra["groups"] = (gtr, gte)
    return raw


def _read_groups_csv(path: Path, n: int) -> np.ndarray | None:
    """groups.csv beside the images (index,group; index = position in the sorted listing, class folder by
    class folder), or None without one."""
    if not path.is_file():
        return None
    rows = [r for r in csv.reader(read_text(path).splitlines()) if r]
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
    return groups


CELEBA_ATTRIBUTES, CELEBA_IMAGES = "list_attr_celeba.txt", "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"


def _load_celeba(folder: Path, spec: DataSpec) -> RawData:
    """CelebA's layout: img_align_celeba/*.jpg, list_attr_celeba.txt (a count line, the 40 attribute names, then
    'file v1 ... v40' with values -1/1), optional list_eval_partition.txt ('file 0|1|2'; 2 = test, the rest train).
    Label = `attribute` (default Smiling), group = `group_attribute` (default Pale_Skin, for audits only);
    faces are centre-cropped to a square and resized to `size` (default 64)."""
    attribute, group_attribute = spec.attribute or "Smiling", spec.group_attribute or "Pale_Skin"
    listing = folder / CELEBA_ATTRIBUTES
    lines = [line.split() for line in read_text(listing).splitlines() if line.strip()]
    if len(lines) < 3:
        raise GenlabError(f"'{listing}' has no rows: it should list attributes per image.")
    names, rows = lines[1], lines[2:]
    for a in (attribute, group_attribute):
        if a not in names:
            raise GenlabError(f"CelebA has no attribute '{a}'; known: {', '.join(names)}.")
    bad = next((r for r in rows if len(r) != len(names) + 1 or Path(r[0]).name != r[0]
                or not set(r[1:]) <= {"-1", "1"}), None)
    if bad is not None:
        raise GenlabError(f"'{listing}' has a row that is not a file name and {len(names)} values of -1 or 1: "
                          f"{' '.join(bad)[:80]!r}.")
    files = [folder / CELEBA_IMAGES / r[0] for r in rows]
    values = np.array([[v == "1" for v in r[1:]] for r in rows])
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise GenlabError(f"{len(missing)} image(s) listed in {CELEBA_ATTRIBUTES} are missing, e.g. '{missing[0]}'.")
    y = values[:, names.index(attribute)].astype(np.int64)
    g = values[:, names.index(group_attribute)].astype(np.int64)
    partition = folder / CELEBA_PARTITION
    if partition.is_file():
        rows = [line.split() for line in read_text(partition).splitlines() if line.strip()]
        if any(len(r) != 2 or r[1] not in ("0", "1", "2") for r in rows):
            raise GenlabError(f"'{partition}' needs one 'file 0|1|2' row per image (2 = test).")
        split_of = dict(rows)
        test = np.array([split_of.get(f.name) == "2" for f in files])
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

LABEL_COLUMNS = ("label", "labels", "class", "target")  # not "y": in "x,y" it is a coordinate
MAX_CLASSES = 1000


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GenlabError(f"cannot read '{path}' as text: {e}.") from None


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric CSV (TSV for .tsv): an optional header row, in which a column named label, labels, class or
    target holds labels (as written; `class_labels` maps them). Returns (N, D) float64 features and labels."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    values, header = _parse_numbers_fast(path, delimiter)
    if values is None:  # the exact reader below, which names the line that is not a table of numbers
        values, header = _parse_numbers(read_text(path), delimiter, path)
    labels = None
    label_cols = [j for j, name in enumerate(header or ()) if name in LABEL_COLUMNS]
    if label_cols:
        labels = values[:, label_cols[0]]
        values = np.delete(values, label_cols[0], axis=1)
    if values.shape[1] == 0:
        raise GenlabError(f"'{path}' has no feature columns besides its labels.")
    return values, labels  # float64: a table becomes float32 once standardised (data.core)


def _parse_numbers_fast(path: Path, delimiter: str) -> tuple[np.ndarray | None, list[str] | None]:
    """numpy's C parser on a well-formed table (an optional header, then numbers): (values, header), or
    (None, None) when it is not one, for the exact reader to explain."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return None, None
    if not first.strip():  # a blank first line: the exact reader skips it
        return None, None
    cells = next(csv.reader([first], delimiter=delimiter), [])
    header = None if all(_is_number(c) for c in cells) else [c.strip().lower() for c in cells]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (and returns nothing) on a header-only file
            values = np.loadtxt(path, delimiter=delimiter, skiprows=1 if header else 0, ndmin=2, dtype=np.float64,
                                quotechar='"', encoding="utf-8")
    except (ValueError, UserWarning, OSError):
        return None, None
    if len(values) == 0 or values.shape[1] != len(cells):
        return None, None
    return values, header


def _parse_numbers(text: str, delimiter: str, path: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise GenlabError(f"cannot read '{path}' as CSV: {e}.") from None
    if not rows:
        raise GenlabError(f"'{path}' is empty: it needs one row per example and one column per feature.")
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip().lower() for c in rows[0]], rows[1:]
    if not rows:
        raise GenlabError(f"'{path}' has a header but no data rows.")
    width = len(header or rows[0])
    values = np.empty((len(rows), width), np.float64)
    for i, row in enumerate(rows):
        line = i + 1 + (header is not None)
        if len(row) != width:
            raise GenlabError(f"'{path}' line {line}: {len(row)} columns, expected {width}.")
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise GenlabError(f"'{path}' line {line} has a value that is not a number: {row!r:.80}.") from None
    return values, header


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
    try:  # memory-mapped first, so that a header promising more than the file holds is refused, not allocated
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except (ValueError, OSError, EOFError) as e:
        raise GenlabError(f"cannot read '{path}' as a plain numeric .npy array ({e}): it is damaged, or needs "
                          "unpickling, which genlab never does.") from None


def _load_npz(path: Path, spec: DataSpec) -> RawData:
    """x (with y, group) split here, or x_train/x_test (with y_train/y_test, group_train/group_test) as given."""
    if not zipfile.is_zipfile(path):  # else numpy takes it for a pickle and suggests unpickling it
        raise GenlabError(f"cannot read '{path}' as a .npz archive: it is not a zip file of .npy arrays.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError) as e:
        # MemoryError: a damaged member header that promises a huge array (zip members cannot be memory-mapped)
        why = str(e) or type(e).__name__
        raise GenlabError(f"cannot read '{path}' as a .npz archive of numeric arrays: {why}.") from None
    return raw_from_arrays(arrays, spec, path)


ARRAY_KEYS = ("x", "y", "group", "x_train", "y_train", "group_train", "x_test", "y_test", "group_test")


def raw_from_arrays(arrays: dict, spec: DataSpec, path) -> RawData:
    """Named arrays (an NPZ's members, or arrays given in Python) as raw data: x with y and group split here,
    or x_train/x_test with y_train/y_test and group_train/group_test as given. `path` names them in errors."""
    x = _pair(arrays, ("x_train", "x_test"), path)
    if x:
        xtr, xte = (_as_examples(a, path) for a in x)
        if xtr.shape[1:] != xte.shape[1:]:
            raise GenlabError(f"'{path}': x_train examples have shape {xtr.shape[1:]} but x_test examples "
                              f"{xte.shape[1:]}; both splits need the same shape.")
        counts = [len(xtr), len(xte)]
        y, classes = (None, None), ()
        if (labels := _pair(arrays, ("y_train", "y_test"), path)) is not None:
            y, classes = class_labels(labels, counts, path)
        raw = RawData((xtr, y[0]), (xte, y[1]), kind=_kind_of(xtr), classes=classes)
        if (groups := _pair(arrays, ("group_train", "group_test"), path)) is not None:
            raw.extra["groups"] = tuple(group_ids(groups, counts, path))
        return raw
    key = next((k for k in ("x", "X", "data", "images") if k in arrays), None)
    if key is None and len(arrays) == 1:
        key = next(iter(arrays))
    if key is None:
        raise GenlabError(
            f"'{path}' needs an array named x (and optionally y, group), or x_train/x_test; it has {list(arrays)}."
        )
    labels = next((arrays[k] for k in ("y", "labels", "label", "targets") if k in arrays), None)
    raw = _split_arrays(arrays[key], labels, spec)
    groups = next((arrays[k] for k in ("group", "groups") if k in arrays), None)
    if groups is not None:
        (groups,) = group_ids([groups], [len(arrays[key])], path)
    return _with_groups(raw, groups, spec)


def _pair(arrays: dict, names: tuple[str, str], where) -> list | None:
    """The train and test members of a pair (x_train, x_test), or None when neither is there."""
    present = [n for n in names if n in arrays]
    if len(present) == 1:
        missing = next(n for n in names if n not in arrays)
        raise GenlabError(f"'{where}' has {present[0]} but no {missing}: give both, or neither.")
    return [arrays[n] for n in names] if present else None


def _per_example(parts: list, counts: list[int], what: str, where) -> np.ndarray:
    """The finite numbers in `parts` (one (N,) array per split, with `counts` examples), joined."""
    parts = [np.asarray(values) for values in parts]
    for values, n in zip(parts, counts):
        if values.shape != (n,):
            raise GenlabError(f"'{where}' has {what} of shape {values.shape} for {n} examples; give one per example.")
        if values.dtype.kind not in "biuf":
            raise GenlabError(f"'{where}' has {what} of type {values.dtype}; they must be numbers.")
    joined = np.concatenate(parts)
    joined = joined.astype(np.int64) if joined.dtype.kind == "b" else joined
    bad = int((~np.isfinite(joined)).sum()) if joined.dtype.kind == "f" else 0
    if bad:
        raise GenlabError(f"'{where}' has {bad} NaN or infinite {what}; every example needs a finite value.")
    return joined


def class_labels(parts: list, counts: list[int], where) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Labels read from a file, one (N,) array per split (mapped jointly): int64 class indices and class names.

    Non-negative integers below MAX_CLASSES stay as they are, named '0'..max. Anything else (negative,
    fractional or large values such as IDs or prices) is mapped from its sorted distinct values to 0..K-1 and
    named as written; more than MAX_CLASSES distinct values are refused.
    """
    y = _per_example(parts, counts, "labels", where)
    integral = y.dtype.kind != "f" or bool(np.all(y == np.round(y)))
    if integral and y.min(initial=0) >= 0 and y.max(initial=0) < MAX_CLASSES:
        index = y.astype(np.int64)
        names = tuple(str(c) for c in range(index.max(initial=-1) + 1))
    else:
        distinct, index = np.unique(y, return_inverse=True)
        if len(distinct) > MAX_CLASSES:
            raise GenlabError(f"'{where}' has {len(distinct)} distinct label values, more than {MAX_CLASSES} "
                              "classes: the column looks like an ID or a measurement, not class labels.")
        names = tuple(str(int(v)) if float(v).is_integer() else str(float(v)) for v in distinct)
    return np.split(index.reshape(-1).astype(np.int64), np.cumsum(counts)[:-1]), names


def group_ids(parts: list, counts: list[int], where) -> list[np.ndarray]:
    """Group ids (hidden nuisances, for audits) read from a file, one (N,) array per split: integers >= 0."""
    g = _per_example(parts, counts, "group ids", where)
    if g.size and (g.min() < 0 or not np.all(g == np.round(g))):
        raise GenlabError(f"'{where}' has group ids that are not integers >= 0.")
    return np.split(g.astype(np.int64), np.cumsum(counts)[:-1])


def _as_examples(x: np.ndarray, path: Path) -> np.ndarray:
    """(N, D) tabular, or images given as (N, H, W), (N, C, H, W) or (N, H, W, C) with C in 1, 3; image pixels
    as `pixel_divisor` says."""
    if x.dtype.kind not in "iuf":
        raise GenlabError(f"'{path}' holds {x.dtype} values; genlab needs real numbers.")
    if x.ndim < 2 or x.size == 0:
        raise GenlabError(f"'{path}' holds an array of shape {x.shape}; it needs one row per example, and values.")
    if x.ndim == 2:
        return x / (255.0 if x.dtype == np.uint8 else 1.0)  # float64, as a CSV table
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise GenlabError(
            f"'{path}' holds an array of shape {x.shape}; use (N, D) for tabular data or (N, H, W), (N, C, H, W), "
            "(N, H, W, C) for images."
        )
    return x.astype(np.float32) / pixel_divisor(x, path)


def _kind_of(x: np.ndarray) -> str:
    return "image" if x.ndim == 4 else "tabular"


def _split_arrays(x, y, spec: DataSpec, classes=None, kind=None) -> RawData:
    """The DESIGN.md split of examples in memory. Labels without `classes` come from a file: `class_labels`
    checks and maps them."""
    x = x if kind == "image" else _as_examples(np.asarray(x), Path(spec.name))
    if y is not None and classes is None:
        (y,), classes = class_labels([y], [len(x)], spec.name)
    train, test = split_by_permutation(x, y, n_train_for(len(x), spec))
    return RawData(train, test, kind=kind or _kind_of(x), classes=classes or ())
