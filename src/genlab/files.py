"""Every file genlab writes goes through here.

A file is written whole or not at all: into a fresh temporary file beside it (created exclusively, so a planted
link is never followed), then renamed over the target. The rename replaces a symlink at the target instead of
writing through it, so a shared run folder cannot make genlab overwrite the file a link points to, and a full
disk or a kill leaves the previous file intact. JSON is strict: NaN and infinities are written as null.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp"


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a new temporary file in the target's folder, then rename it to `path`."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a run folder is read as any file the user writes
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # only the temporary file this call created (gone already after the rename)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))


def finite(obj):
    """`obj` with every NaN or infinite float replaced by None (JSON null), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return finite(obj.item())
    return obj


def dumps(obj, **kwargs) -> str:
    """Strict JSON (what every parser accepts): non-finite numbers become null."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, dumps(obj, indent=2) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log file; a symlink in its place is refused, never followed."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")


def save_image(image, path: str | os.PathLike) -> Path:
    """A Pillow image, in the format its suffix names (PNG by default)."""
    from PIL import Image

    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    return write_atomic(path, lambda p: image.save(p, format=image_format))


def save_figure(fig, path: str | os.PathLike) -> Path:
    """A matplotlib figure, in the format its suffix names (PNG by default)."""
    path = Path(path)
    return write_atomic(path, lambda p: fig.savefig(p, format=path.suffix.lstrip(".").lower() or "png"))


def save_array(array, path: str | os.PathLike) -> Path:
    """A numpy array as .npy (never pickled)."""
    import numpy as np

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, array, allow_pickle=False)

    return write_atomic(path, write)


def save_arrays(path: str | os.PathLike, compressed: bool = False, **arrays) -> Path:
    """Named numpy arrays as .npz (never pickled)."""
    import numpy as np

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)

    return write_atomic(path, write)


def remove_stale_temporaries(folder: str | os.PathLike, names) -> list[Path]:
    """Delete the temporary files a killed write of one of `names` left in `folder` (only genlab's own)."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*{TMP_SUFFIX}"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
    return removed
