"""Every file format the loaders read, written valid in its official layout and then damaged in many ways.

For each damaged variant, `load_dataset` either works or raises GenlabError (never another exception), and
`genlab train` either trains (exit 0) or prints one `error:` line, exits 2 and writes no run folder.
"""

import gzip
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from genlab import GenlabError, load_dataset
from genlab.cli import main
from test_data import png_claiming, write_cifar_batch, write_idx

N = 20  # examples per file: tiny, so that the whole test stays within seconds


def images(rng, n=N, side=8):
    return rng.randint(0, 256, (n, side, side)).astype(np.uint8)


def image_folder(root, rng, classes=False):
    folder = root / "images"
    for i, pixels in enumerate(images(rng)):
        where = folder / ("ab"[i % 2] if classes else "")
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(where / (f"{i}.png" if i % 3 else f"{i}.jpg"))
    first = "a/" if classes else ""
    return folder, [f"images/{first}2.png", f"images/{first}0.jpg"]


def idx_file(root, rng, compress=False):
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    write_idx(root / name, images(rng), compress)
    return root / name, [name]


def idx_pair(root, rng):
    for split, n in (("train", N), ("t10k", 6)):
        write_idx(root / f"{split}-images-idx3-ubyte", images(rng, n))
        write_idx(root / f"{split}-labels-idx1-ubyte", rng.randint(0, 10, n))
    return root, ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def cifar_file(root, rng):
    write_cifar_batch(root / "data_batch_1.bin", rng.randint(0, 10, N), rng.randint(0, 256, (N, 3, 32, 32)))
    return root / "data_batch_1.bin", ["data_batch_1.bin"]


def cifar_folder(root, rng):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir()
    for name, n in (("data_batch_1.bin", 8), ("data_batch_2.bin", 6), ("test_batch.bin", 4)):
        write_cifar_batch(folder / name, rng.randint(0, 10, n), rng.randint(0, 256, (n, 3, 32, 32)))
    (folder / "batches.meta.txt").write_text("\n".join(f"class{c}" for c in range(10)) + "\n")
    return root, ["cifar-10-batches-bin/data_batch_2.bin", "cifar-10-batches-bin/batches.meta.txt"]


def table(root, rng, delimiter=","):
    name = "t.tsv" if delimiter == "\t" else "t.csv"
    rows = [delimiter.join(["a", "b", "c", "label"])]
    rows += [delimiter.join([*(f"{v:.4f}" for v in rng.randn(3)), str(rng.randint(3))]) for _ in range(N)]
    (root / name).write_text("\n".join(rows) + "\n")
    return root / name, [name]


def npy(root, rng):
    np.save(root / "x.npy", images(rng))
    return root / "x.npy", ["x.npy"]


def npz(root, rng):
    np.savez(root / "d.npz", x_train=rng.randn(N, 3), x_test=rng.randn(6, 3), y_train=rng.randint(0, 3, N),
             y_test=rng.randint(0, 3, 6), group_train=rng.randint(0, 2, N), group_test=rng.randint(0, 2, 6))
    return root / "d.npz", ["d.npz"]


def celeba(root, rng):
    names = ["Smiling", "Pale_Skin", "Young"]
    (root / "img_align_celeba").mkdir()
    rows = []
    for i in range(N):
        Image.fromarray(rng.randint(0, 256, (10, 8, 3)).astype(np.uint8)).save(root / "img_align_celeba" / f"{i}.jpg")
        rows.append(f"{i}.jpg " + " ".join(str(rng.choice([-1, 1])) for _ in names))
    (root / "list_attr_celeba.txt").write_text(f"{N}\n" + " ".join(names) + "\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{i}.jpg {2 if i % 5 == 0 else 0}\n" for i in range(N)))
    return root, ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/3.jpg"]


LAYOUTS = {
    "image folder": image_folder,
    "class folders": lambda root, rng: image_folder(root, rng, classes=True),
    "idx": idx_file,
    "idx gz": lambda root, rng: idx_file(root, rng, compress=True),
    "idx pair": idx_pair,
    "cifar batch": cifar_file,
    "cifar folder": cifar_folder,
    "csv": table,
    "tsv": lambda root, rng: table(root, rng, "\t"),
    "npy": npy,
    "npz": npz,
    "celeba": celeba,
}


def npy_claiming(shape) -> bytes:
    """A .npy file whose header claims `shape` but that holds 16 float64 values."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(128)


def lying_variants(name: str, data: bytes, rng) -> dict[str, bytes]:
    """Valid-looking headers that lie about sizes, for the formats that have such headers."""
    if name.endswith(".png"):
        return {f"png claims {w}x{h}": png_claiming((w, h)) for w, h in ((20000, 20000), (10000, 10000),
                                                                         (8, 3000), (0, 8))}
    if "ubyte" in name and not name.endswith(".gz"):
        ndim = data[3]
        dims = list(struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim]))
        lies = {"idx count + 1": [dims[0] + 1, *dims[1:]], "idx huge dims": [2**32 - 1] * ndim,
                "idx no examples": [0, *dims[1:]]}
        out = {k: data[:4] + struct.pack(f">{ndim}I", *v) + data[4 + 4 * ndim:] for k, v in lies.items()}
        out["idx ndim 0"] = data[:3] + b"\x00" + data[4 + 4 * ndim:]
        out["idx ndim 255"] = data[:3] + b"\xff" + data[4:]
        out["idx float pixels"] = data[:2] + b"\x0d" + data[3:]
        return out
    if name.endswith(".bin"):
        return {"cifar label 200": b"\xc8" + data[1:], "cifar extra byte": data + b"\x00"}
    if name.endswith((".csv", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        header, *rows = data.decode().splitlines()
        table = lambda body: "\n".join([header, *body]).encode()
        return {"ragged row": table([*rows, "1"]),
                "nan label": table([*rows, sep.join(["1", "2", "3", "nan"])]),
                "price labels": table([r.rsplit(sep, 1)[0] + sep + str(rng.randint(10**6, 10**12)) for r in rows]),
                "id labels": table([sep.join(["1", "2", "3", str(10**12 + i)]) for i in range(1500)]),
                "nul bytes": data.replace(sep.encode(), b"\x00")}
    if name.endswith(".npy"):
        objects = io.BytesIO()
        np.save(objects, np.array([{"x": 1}] * 4, dtype=object), allow_pickle=True)
        return {"npy claims more": npy_claiming((20, 8, 8)), "npy claims huge": npy_claiming((10**12, 8, 8)),
                "npy 1-d": npy_claiming((16,)), "pickled array": pickle.dumps(np.zeros((4, 4))),
                "npy of objects": objects.getvalue()}
    if name.endswith(".npz"):
        out = {}
        for label, member in (("npz member claims huge", npy_claiming((10**12, 3))),
                              ("npz member claims more", npy_claiming((30, 3)))):
            path_bytes = io.BytesIO()
            with zipfile.ZipFile(path_bytes, "w") as z:
                z.writestr("x_train.npy", member)
                z.writestr("x_test.npy", npy_claiming((4, 3)))
            out[label] = path_bytes.getvalue()
        return out
    if name == "list_attr_celeba.txt":
        count, names, first, *rows = data.decode().splitlines()
        listing = lambda row: "\n".join([count, names, row, *rows]).encode()
        return {"attr value 0": listing(first.split()[0] + " 0" * len(names.split())),
                "attr short row": listing(first.rsplit(" ", 1)[0]),
                "attr escapes": listing("../../x.jpg" + first[first.index(" "):])}
    if name == "list_eval_partition.txt":
        return {"partition 7": data.replace(b" 0\n", b" 7\n", 1), "partition one column": b"0.jpg\n",
                "all test": data.replace(b" 0\n", b" 2\n")}
    return {}


def variants(name: str, data: bytes, seed: int) -> dict[str, bytes]:
    """Damaged copies of a valid file's bytes, drawn from a fixed seed."""
    rng = np.random.RandomState(seed)
    out = {f"truncated to {n}": data[:n] for n in sorted({0, 1, 3, 7, 16, 40, len(data) // 2, len(data) - 1})}
    out["random bytes"] = rng.randint(0, 256, len(data)).astype(np.uint8).tobytes()
    out["64 random bytes"] = rng.randint(0, 256, 64).astype(np.uint8).tobytes()
    out["zero bytes"] = bytes(len(data))
    for k in range(6):  # a few header bytes changed, magic numbers included
        flipped = bytearray(data)
        for i in rng.choice(min(32, len(data)), size=min(2, len(data)), replace=False):
            flipped[i] ^= rng.randint(1, 256)
        out[f"header flipped {k}"] = bytes(flipped)
    out["wrong magic"] = b"\xde\xad\xbe\xef" + data[4:]
    out["pickle"] = pickle.dumps({"x": np.zeros(3)})
    out["gzip of garbage"] = gzip.compress(rng.randint(0, 256, 300).astype(np.uint8).tobytes())
    out["broken gzip"] = gzip.compress(data)[: max(12, len(gzip.compress(data)) // 2)]
    if name.endswith(".gz"):  # damage what is inside the gzip, too
        inner = gzip.decompress(data)
        out.update({f"gzip of {k}": gzip.compress(v) for k, v in lying_variants(name[:-3], inner, rng).items()})
        out["gzip of truncated"] = gzip.compress(inner[: len(inner) // 2])
    out.update(lying_variants(name, data, rng))
    return out


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_damaged_files_load_or_raise_genlab_error(layout, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    problems, seen = [], set()
    valid = tmp_path / "valid"
    valid.mkdir()
    path, targets = LAYOUTS[layout](valid, np.random.RandomState(0))
    load_dataset(path)  # the valid file loads
    for t, target in enumerate(targets):
        for v, (variant, damaged) in enumerate(variants(target, (valid / target).read_bytes(), seed=t).items()):
            case = tmp_path / f"{t}-{v}"
            case.mkdir()
            path, _ = LAYOUTS[layout](case, np.random.RandomState(0))
            (case / target).write_bytes(damaged)
            what = f"{target} {variant}"
            try:
                meta = load_dataset(path).meta
                signature = (meta.kind, meta.shape)
            except GenlabError as e:
                signature = "error"
                if "\n" in str(e):
                    problems.append(f"{what}: a GenlabError of several lines: {e!r}")
            except Exception as e:  # anything but a GenlabError is what this test looks for
                problems.append(f"{what}: {type(e).__name__}: {e}")
                continue
            if signature != "error" and signature in seen:
                continue  # the CLI already trained on data of this kind and shape
            seen.add(signature)
            out = case / "run"
            capsys.readouterr()
            try:
                code = main(["train", "ae", "--data", str(path), "--epochs", "1", "--out", str(out), "--no-progress"])
            except Exception as e:
                problems.append(f"{what}: the CLI raised {type(e).__name__}: {e}")
                continue
            err = capsys.readouterr().err
            if code == 2:
                if len(err.splitlines()) != 1 or not err.startswith("error:"):
                    problems.append(f"{what}: exit 2 but stderr is {err!r}")
                if out.exists():
                    problems.append(f"{what}: exit 2 but {out} was written")
            elif code != 0:
                problems.append(f"{what}: the CLI exited {code}: {err!r}")
    assert not problems, "\n".join(problems)
