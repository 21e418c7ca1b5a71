"""Sample quality without a download: for any model that can `sample(n)` (GAN, VAE, AE).

- Mode coverage on the 2-D mixtures (the VEEGAN / PacGAN / GDPP protocol): 2,500 samples; a sample is
  high quality when within 3 standard deviations of its nearest mode; a mode is covered when at least one
  high-quality sample is nearest to it; reverse KL of the high-quality samples' mode histogram to uniform.
  Modes alone can be gamed: uniform noise over the square covers most modes at a very low high-quality rate,
  so the three numbers are read together.
- Frechet distance (FID's formula) on the features of a domain classifier genlab trains on the dataset's
  own training split (deterministic, cached), beside its real-vs-real floor: FD(test, train) with as many
  test examples as samples. Improved precision and recall (Kynkaanniemi et al. 2019, k=3) and density and
  coverage (Naeem et al. 2020, k=5) on the same features, real = the test split. Classes covered and the
  KL of the classifier's predicted-label histogram to uniform.
  Images without labels use PCA features (64 components of the training pixels); points and tabular data
  their own coordinates.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import numpy as np
import scipy.linalg
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from torch import nn

from genlab.data.core import to_data_units
from genlab.data.embedded import MIXTURES, cache_dir
from genlab.errors import GenlabError
from genlab.models.base import evaluating

MODE_SAMPLES = 2500


# ---------------------------------------------------------------------------------------------- the numbers


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)): the Frechet (2-Wasserstein) distance of two Gaussians."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    with warnings.catch_warnings():  # features with dead units make the product singular: handled below
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(root).all():  # regularise both, as FID implementations do
            eps = 1e-6 * np.eye(len(cov1))
            root = scipy.linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    root = np.real(root)
    return float(max(0.0, ((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root)))


def feature_fd(a: np.ndarray, b: np.ndarray) -> float | None:
    """The Frechet distance between Gaussians fitted to two feature sets (N, D); None when a set has a single
    example (no covariance)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if min(len(a), len(b)) < 2:
        return None
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return distances[:, k]


PRDC_NEIGHBOURS = 5  # k of density and coverage (Naeem et al. 2020); precision and recall use 3


def prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = PRDC_NEIGHBOURS) -> dict:
    """Improved precision/recall (k-NN balls, k_pr) and density/coverage (k_dc) of fake against real."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(len(real), len(fake)) <= max(k_pr, k_dc):
        raise GenlabError(f"precision/recall need more than {max(k_pr, k_dc)} real and generated examples.")
    dist = pairwise_distances(real, fake)  # (R, F)
    real_pr, fake_pr, real_dc = _knn_radii(real, k_pr), _knn_radii(fake, k_pr), _knn_radii(real, k_dc)
    return {
        "precision": float((dist <= real_pr[:, None]).any(0).mean()),
        "recall": float((dist <= fake_pr[None, :]).any(1).mean()),
        "density": float((dist <= real_dc[:, None]).sum(0).mean() / k_dc),
        "coverage": float((dist.min(1) <= real_dc).mean()),
    }


def mode_coverage(samples: np.ndarray, centers: np.ndarray, std: float) -> dict:
    """modes covered, fraction of high-quality samples, reverse KL of their mode histogram to uniform."""
    samples = np.asarray(samples, np.float64)
    dist = pairwise_distances(samples, centers)
    nearest = dist.argmin(1)
    good = dist[np.arange(len(samples)), nearest] <= 3 * std
    counts = np.bincount(nearest[good], minlength=len(centers))
    q = counts / max(1, counts.sum())
    reverse_kl = float(np.sum(q[q > 0] * np.log(q[q > 0] * len(centers)))) if counts.sum() else None
    return {"modes": int((counts > 0).sum()), "high_quality": float(good.mean()), "reverse_kl": reverse_kl}


def label_coverage(labels: np.ndarray, num_classes: int, share: float = 0.25) -> dict:
    """Classes covered (predicted for at least `share` of a fair 1/K share of the samples) and
    the KL of the predicted-label histogram to uniform."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    q = counts / counts.sum()
    return {"classes_covered": int((q >= share / num_classes).sum()),
            "class_kl": float(np.sum(q[q > 0] * np.log(q[q > 0] * num_classes)))}


# ---------------------------------------------------------------------------------------------- features


class DomainClassifier(nn.Module):
    """A small conv classifier of the dataset's own classes; its 128-d penultimate layer is the feature space."""

    VERSION = 1
    EPOCHS = 8

    def __init__(self, shape: tuple[int, ...], num_classes: int):
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(),
        )
        self.classify = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.classify(self.features(x))


def _batches(x, batch_size: int = 500):
    for i in range(0, len(x), batch_size):
        yield torch.as_tensor(x[i : i + batch_size]).float()


@torch.no_grad()
def _apply(fn, x) -> np.ndarray:
    return torch.cat([fn(b) for b in _batches(x)]).numpy()


def _fingerprint(data) -> str:
    """Names the training split's content: the spec, the sizes and a hash of some examples and all labels."""
    h = hashlib.sha256()
    h.update(json.dumps(data.spec.to_dict() if data.spec else data.meta.name, sort_keys=True).encode())
    h.update(str((len(data.train), tuple(data.meta.shape), DomainClassifier.VERSION)).encode())
    h.update(torch.as_tensor(data.train.x[:64]).numpy().tobytes())
    h.update(data.train.y.numpy().tobytes())
    return h.hexdigest()[:16]


def domain_classifier(data, progress: bool = False) -> tuple[DomainClassifier, float]:
    """The dataset's classifier and its test accuracy: trained once with a fixed seed, then read from the cache."""
    from genlab import runs

    num_classes = int(data.train.y.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same initial weights every time: the classifier is a fixed function of the data
        net = DomainClassifier(tuple(data.meta.shape), num_classes)
    file = cache_dir() / "classifiers" / f"{data.meta.name.replace('/', '_')[-40:]}-{_fingerprint(data)}.safetensors"
    if file.is_file():
        tensors, meta = runs.read_tensors(file, "classifier")
        runs.load_weights(net, tensors, file)
        return net.eval(), float(meta["accuracy"])
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        n = len(data.train)
        for _ in tqdm(range(DomainClassifier.EPOCHS), desc="domain classifier", disable=not progress, unit="epoch"):
            for index in torch.randperm(n).split(128):
                x = torch.as_tensor(data.train.x[index]).float()
                loss = nn.functional.cross_entropy(net(x), data.train.y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    net.eval()
    predicted = _apply(net, data.test.x).argmax(1) if data.test.y is not None else None
    accuracy = float((predicted == data.test.y.numpy()).mean()) if predicted is not None else math.nan
    file.parent.mkdir(parents=True, exist_ok=True)
    runs.save_tensors(file, dict(net.state_dict()), {"kind": "classifier", "accuracy": str(accuracy)})
    return net, accuracy


def _in_data_units(x: torch.Tensor, meta) -> np.ndarray:
    return to_data_units(x, meta).reshape(len(x), -1)


def _flat(x) -> np.ndarray:
    return torch.as_tensor(x).double().numpy().reshape(len(x), -1)


# ---------------------------------------------------------------------------------------------- entry points


@torch.no_grad()
def quality(model, data, n: int | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Every sample-quality number that applies to this data, from n samples (default: the test split's size)."""
    n = n or len(data.test)
    g = torch.Generator().manual_seed(seed)
    result: dict = {"quality_samples": n}
    with evaluating(model):
        samples = model.sample(n, generator=g).cpu()
        if data.meta.name in MIXTURES:
            centers, std = MIXTURES[data.meta.name]
            more = model.sample(MODE_SAMPLES, generator=torch.Generator().manual_seed(seed + 1)).cpu()
            result.update(mode_coverage(_in_data_units(more, data.meta), centers(), std))

    if data.meta.kind == "image" and data.train.y is not None:
        net, accuracy = domain_classifier(data, progress)
        feats = lambda x: _apply(net.features, x)  # noqa: E731
        result.update(features="domain classifier", classifier_accuracy=accuracy)
        logits = _apply(net, samples)
        result.update(label_coverage(logits.argmax(1), logits.shape[1]))
    elif data.meta.kind == "image":
        pixels = _flat(data.train.x[:10000])
        pca = PCA(min(64, *pixels.shape), random_state=0).fit(pixels)
        feats = lambda x: pca.transform(_flat(x))  # noqa: E731
        result["features"] = "pca64 of pixels (no labels for a domain classifier)"
    else:
        feats = _flat  # standardised units for tables: scale-free, and 1e300 columns do not overflow
        result["features"] = "the model's coordinates (tables standardised)"
    train_f = feats(data.train.x)
    test_f = feats(data.test.x[:n])
    fake_f = feats(samples)
    result["fd"] = feature_fd(fake_f, train_f)
    result["fd_floor"] = feature_fd(test_f, train_f)
    if min(len(test_f), len(fake_f)) > PRDC_NEIGHBOURS:
        result.update(prdc(test_f, fake_f, k_dc=PRDC_NEIGHBOURS))
    else:  # a tiny test split: the k-NN balls need more neighbours than there are
        result.update(dict.fromkeys(("precision", "recall", "density", "coverage")))
    return result


@torch.no_grad()
def monitor(model, data, n: int = 500) -> dict:
    """A cheap quality number during training, to see mode collapse as it happens: modes and high-quality
    share for the 2-D mixtures, classes covered (1-nearest-neighbour labels in pixel space) for labelled images."""
    with evaluating(model):
        g = torch.Generator().manual_seed(0)
        if data.meta.name in MIXTURES:
            centers, std = MIXTURES[data.meta.name]
            result = mode_coverage(_in_data_units(model.sample(MODE_SAMPLES, generator=g).cpu(), data.meta),
                                   centers(), std)
            return {"modes": result["modes"], "high_quality": result["high_quality"]}
        if data.meta.kind == "image" and data.train.y is not None and torch.is_tensor(data.train.x):
            knn = KNeighborsClassifier(1).fit(data.train.x[:5000].flatten(1).numpy(), data.train.y[:5000].numpy())
            labels = knn.predict(model.sample(n, generator=g).cpu().flatten(1).numpy())
            return {"classes_covered": label_coverage(labels, int(data.train.y.max()) + 1)["classes_covered"]}
        return {}
