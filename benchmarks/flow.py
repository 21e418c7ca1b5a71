"""The normalizing flow against the VAE: test NLL on low-dimensional data, and as an outlier detector on a table.

    python benchmarks/flow.py density              # grid25, ring8 and the breast-cancer table; seeds 0 1 2
    python benchmarks/flow.py outliers             # breast cancer, 10% of the malignant planted among the benign
    python benchmarks/flow.py all --seeds 0
Density: both families trained by the same loop on the same split and seed, with the same budget (epochs, batch
size, learning rate); test NLL in nats per example: exact for the flow, the IWAE bound with K = 1000 for the VAE
(an upper bound on its NLL). References in the same script: a single Gaussian with full covariance fitted to the
training split (closed form) and, for the synthetic mixtures, the true density of the generating mixture. Outliers:
the protocol of benchmarks/outliers.py tabular, OutlierDetector(model=...) with its auto score, against kNN
distance and PyOD's COPOD (with `pip install genlab[bench]`). Rows are appended to benchmarks/out/flow.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from common import mean_sd, record_all
from scipy.stats import multivariate_normal
from sklearn.metrics import average_precision_score, roc_auc_score

from genlab import VAE, TrainConfig, VAEConfig, evaluate, fit, load_dataset
from genlab.data.core import Dataset, DatasetMeta, Split
from genlab.data.embedded import MIXTURES
from genlab.models.flow import Flow, FlowConfig

OUT = "benchmarks/out/flow.jsonl"
BUDGET = dict(epochs=30, batch_size=256, lr=1e-3, val_fraction=0.0, device="cpu")


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """The outlier benchmark's table: the benign rows and 10% of the malignant ones (planted), 30 features."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)  # y: 0 malignant, 1 benign
    rng = np.random.RandomState(0)
    malignant = np.flatnonzero(y == 0)
    planted = rng.choice(malignant, size=int(round(0.1 * len(malignant))), replace=False)
    pick = np.concatenate([np.flatnonzero(y == 1), planted])
    return x[pick].astype(np.float32), y[pick] == 0


def table_dataset() -> Dataset:
    """The breast-cancer table standardised on a seeded 80/20 split, as load_dataset would give a CSV of it."""
    x, _ = breast_cancer()
    order = np.random.RandomState(0).permutation(len(x))
    n_train = int(0.8 * len(x))
    train, test = x[order[:n_train]], x[order[n_train:]]
    mean, std = train.mean(0), train.std(0)
    train, test = (train - mean) / std, (test - mean) / std
    meta = DatasetMeta(name="breast_cancer", kind="tabular", shape=(x.shape[1],))
    return Dataset(Split(torch.from_numpy(train)), Split(torch.from_numpy(test)), meta)


def gaussian_nll(train: np.ndarray, test: np.ndarray) -> float:
    """The test NLL of one full-covariance Gaussian fitted to the training split."""
    cov = np.cov(train, rowvar=False) + 1e-6 * np.eye(train.shape[1])
    return float(-multivariate_normal(train.mean(0), cov).logpdf(test).mean())


def mixture_nll(name: str, test: np.ndarray) -> float | None:
    """The test NLL under the mixture that generated the data (the floor no model beats on average)."""
    if name not in MIXTURES:
        return None
    centers, std = MIXTURES[name]
    c = centers()
    log_components = multivariate_normal(np.zeros(2), std**2 * np.eye(2)).logpdf(test[:, None, :] - c[None])
    return float(-(np.logaddexp.reduce(log_components, axis=1) - math.log(len(c))).mean())


def density(seeds):
    sets = {"grid25": lambda: load_dataset("grid25"), "ring8": lambda: load_dataset("ring8"),
            "breast_cancer": table_dataset}

    def job(name, seed):
        def run():
            data = sets[name]()
            train, test = data.train.x.numpy().astype(np.float64), data.test.x.numpy().astype(np.float64)
            row = {"protocol": "density", "data": name, "seed": seed, "n_train": len(train),
                   "gaussian_nll": gaussian_nll(train, test), "true_nll": mixture_nll(name, test)}
            for family, make in (("flow", lambda: Flow(FlowConfig.for_data(data.meta))),
                                 ("vae", lambda: VAE(VAEConfig.for_data(data.meta)))):
                torch.manual_seed(seed)
                model = make()
                started = time.perf_counter()
                fit(model, data, TrainConfig(seed=seed, **BUDGET), progress=False)
                row[f"{family}_train_s"] = round(time.perf_counter() - started, 1)
                row[f"{family}_nll"] = evaluate(model, data.test.x, kind=data.meta.kind, importance_samples=1000,
                                                progress=False)["nll_nats"]
            return row
        return run

    rows = record_all([job(name, s) for name in sets for s in seeds], OUT)
    lines = ["| data | flow (exact) | VAE (IWAE K=1000) | one Gaussian | true mixture | flow / VAE train s | seeds |",
             "|---|---|---|---|---|---|---|"]
    for name in sets:
        r = [row for row in rows if row["data"] == name]
        true = f"{r[0]['true_nll']:.3f}" if r[0]["true_nll"] is not None else "-"
        lines.append(f"| {name} | {mean_sd([x['flow_nll'] for x in r], 3)} | {mean_sd([x['vae_nll'] for x in r], 3)} "
                     f"| {r[0]['gaussian_nll']:.3f} | {true} | {np.mean([x['flow_train_s'] for x in r]):.0f} / "
                     f"{np.mean([x['vae_train_s'] for x in r]):.0f} | {len(r)} |")
    return "\n".join(lines)


def outliers(seeds):
    from genlab import OutlierDetector

    x, outlier = breast_cancer()
    standard = (x - x.mean(0)) / x.std(0)

    def knn(seed):
        from sklearn.neighbors import NearestNeighbors

        distances, _ = NearestNeighbors(n_neighbors=6).fit(standard).kneighbors(standard)
        return distances[:, 5]

    def copod(seed):
        try:
            from pyod.models.copod import COPOD
        except ImportError:
            return None
        return COPOD().fit(standard).decision_scores_

    def job(seed):
        def run():
            row = {"protocol": "outliers", "seed": seed, "n": len(x), "outliers": int(outlier.sum())}
            for family in ("flow", "vae"):
                started = time.perf_counter()
                det = OutlierDetector(model=family, seed=seed).fit(x)
                s = -det.score_samples(x)
                row[family] = [roc_auc_score(outlier, s), average_precision_score(outlier, s)]
                row[f"{family}_score"] = det.score_
                row[f"{family}_s"] = round(time.perf_counter() - started, 1)
            for name, fn in (("kNN", knn), ("COPOD", copod)):
                s = fn(seed)
                if s is not None:
                    row[name] = [roc_auc_score(outlier, s), average_precision_score(outlier, s)]
            return row
        return run

    rows = record_all([job(s) for s in seeds], OUT)
    lines = ["| method | AUROC | AUPRC |", "|---|---|---|"]
    for m in ("flow", "vae", "kNN", "COPOD"):
        if m in rows[0]:
            lines.append(f"| {m} | {mean_sd([r[m][0] for r in rows], 3)} | {mean_sd([r[m][1] for r in rows], 3)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=["density", "outliers", "all"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    chosen = ["density", "outliers"] if args.protocol == "all" else [args.protocol]
    for name in chosen:
        print(globals()[name](args.seeds), flush=True)
    print(json.dumps({"done": chosen}))


if __name__ == "__main__":
    main()
