"""Outlier detection: genlab's scores against classical and PyOD baselines, measured in the same script.

    python benchmarks/outliers.py oneclass   # Ruff et al. 2018 protocol on mnist5k: fit on digit d, score all tests
    python benchmarks/outliers.py ood        # a VAE on all mnist5k digits against 5 out-of-distribution sets
    python benchmarks/outliers.py tabular    # breast cancer, 10% of the malignant planted among the benign
    python benchmarks/outliers.py all
Baselines: scikit-learn's IsolationForest, OneClassSVM, LocalOutlierFactor, kNN distance (k=5), PCA
reconstruction, and PyOD's ECOD / COPOD / AutoEncoder / VAE / DeepSVDD when `pip install genlab[bench]` is
there (skipped with a note otherwise). AUROC with outliers as the positive class. Rows are appended to
benchmarks/out/outliers.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from common import mean_sd, record_all
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.svm import OneClassSVM

from genlab import OutlierDetector, load_dataset

GENLAB_SCORES = ("elbo", "iwae", "recon", "latent_density", "typicality", "capped_elbo", "complexity",
                 "likelihood_ratio")
OUT = "benchmarks/out/outliers.jsonl"


# ---------------------------------------------------------------------------------------------- baselines
# each: (train (N, D), test (M, D), seed) -> anomaly scores of test, higher = more outlying


def knn_distance(train, test, seed, k=5):
    nn = NearestNeighbors(n_neighbors=k).fit(train)
    return nn.kneighbors(test)[0].mean(1)


def pca_reconstruction(train, test, seed, variance=0.9):
    pca = PCA(variance, random_state=seed).fit(train)
    return ((test - pca.inverse_transform(pca.transform(test))) ** 2).sum(1)


BASELINES = {
    "IsolationForest": lambda a, b, s: -IsolationForest(random_state=s).fit(a).score_samples(b),
    "OneClassSVM": lambda a, b, s: -OneClassSVM(gamma="scale", nu=0.1).fit(a).score_samples(b),
    "kNN": knn_distance,
    "PCA": pca_reconstruction,
}


def pyod_baselines(names):
    try:
        import pyod  # noqa: F401
    except ImportError:
        print("PyOD is not installed (pip install 'genlab[bench]'): its baselines are skipped", flush=True)
        return {}
    modules = {"ECOD": ("ecod", "ECOD"), "COPOD": ("copod", "COPOD"), "AutoEncoder": ("auto_encoder", "AutoEncoder"),
               "VAE": ("vae", "VAE"), "DeepSVDD": ("deep_svdd", "DeepSVDD")}
    out = {}
    for name in names:
        def run(a, b, s, name=name):
            module, cls = modules[name]
            model_cls = getattr(__import__(f"pyod.models.{module}", fromlist=[cls]), cls)
            kwargs = {"random_state": s} if name in ("AutoEncoder", "VAE", "DeepSVDD") else {}
            if name == "DeepSVDD":
                kwargs["n_features"] = a.shape[1]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = model_cls(**kwargs).fit(a)
            return model.decision_function(b)
        out[f"PyOD {name}"] = run
    return out


SCORES = list(GENLAB_SCORES)  # --scores narrows it


def fitted_base(x_train, seed, scores):
    """One detector whose model serves every score (the likelihood ratio's background trained only if asked)."""
    return OutlierDetector(score="likelihood_ratio" if "likelihood_ratio" in scores else "elbo", seed=seed).fit(x_train)


def genlab_scores(train, test, seed, shape, scores=None):
    """AUROC-ready anomaly scores of every genlab score from one model (and one background model)."""
    scores = scores or SCORES
    x_train = train.reshape(len(train), *shape)
    x_test = test.reshape(len(test), *shape)
    base = fitted_base(x_train, seed, scores)
    out = {}
    for score in scores:
        if score == "complexity" and len(shape) != 3:
            continue
        det = base if score == base.score_ else base.with_score(score, x_train)
        out[f"genlab {score}"] = -det.score_samples(x_test)
    return out


# ---------------------------------------------------------------------------------------------- protocols


def oneclass(seeds):
    data = load_dataset("mnist5k")
    train_x, train_y = data.train.x.numpy(), data.train.y.numpy()
    test = data.test.x.numpy().reshape(len(data.test), -1)
    baselines = {**BASELINES, **pyod_baselines(["AutoEncoder", "VAE", "DeepSVDD"])}

    def job(digit, seed):
        def run():
            a = train_x[train_y == digit].reshape(-1, 784)
            outlier = data.test.y.numpy() != digit
            row = {"protocol": "oneclass", "digit": digit, "seed": seed}
            started = time.perf_counter()
            for name, s in genlab_scores(a, test, seed, (1, 28, 28)).items():
                row[name] = roc_auc_score(outlier, s)
            row["genlab_s"] = round(time.perf_counter() - started, 1)
            for name, fn in baselines.items():
                row[name] = roc_auc_score(outlier, fn(a, test, seed))
            return row
        return run

    rows = record_all([job(d, s) for s in seeds for d in range(10)], OUT)
    methods = [k for k in rows[0] if k not in ("protocol", "digit", "seed", "genlab_s")]
    lines = ["| method | " + " | ".join(str(d) for d in range(10)) + " | mean |", "|---" * 12 + "|"]
    for m in methods:
        per = [np.mean([r[m] for r in rows if r["digit"] == d]) for d in range(10)]
        means = [np.mean([r[m] for r in rows if r["seed"] == s]) for s in seeds]
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in per) + f" | {mean_sd(means, 3)} |")
    return "\n".join(lines)


def ood_sets(data) -> dict[str, np.ndarray]:
    test = data.test.x.numpy()
    rng = np.random.RandomState(0)
    from sklearn.datasets import load_digits

    small = load_digits().images[:1000] / 16.0
    upsampled = np.stack([np.asarray(Image.fromarray((d * 255).astype(np.uint8)).resize((28, 28), Image.BILINEAR))
                          for d in small]).astype(np.float32)[:, None] / 255.0
    return {
        "inverted": 1.0 - test,
        "uniform noise": rng.rand(1000, 1, 28, 28).astype(np.float32),
        "constant": np.linspace(0, 1, 256, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 28, 28), np.float32),
        "all black": np.zeros((10, 1, 28, 28), np.float32),
        "rotated 90": np.rot90(test, 1, axes=(2, 3)).copy(),
        "digits upsampled": upsampled,
    }


def ood(seeds):
    data = load_dataset("mnist5k")
    train, test = data.train.x.numpy(), data.test.x.numpy()
    cases = ood_sets(data)

    def job(seed):
        def run():
            base = fitted_base(train, seed, SCORES)
            row = {"protocol": "ood", "seed": seed}
            for score in SCORES:
                det = base if score == base.score_ else base.with_score(score, train)
                inside = det.score_samples(test)
                for case, x in cases.items():
                    s = np.concatenate([inside, det.score_samples(x)])
                    outlier = np.r_[np.zeros(len(inside)), np.ones(len(x))]
                    row[f"{score} | {case}"] = roc_auc_score(outlier, -s)
            return row
        return run

    rows = record_all([job(s) for s in seeds], OUT)
    lines = ["| score | " + " | ".join(cases) + " | worst |", "|---" * (len(cases) + 2) + "|"]
    for score in SCORES:
        cells = [np.mean([r[f"{score} | {c}"] for r in rows]) for c in cases]
        lines.append(f"| {score} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {min(cells):.3f} |")
    return "\n".join(lines)


def tabular(seeds):
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)  # y: 0 malignant, 1 benign
    rng = np.random.RandomState(0)
    malignant = np.flatnonzero(y == 0)
    planted = rng.choice(malignant, size=int(round(0.1 * len(malignant))), replace=False)
    pick = np.concatenate([np.flatnonzero(y == 1), planted])
    x, outlier = x[pick].astype(np.float32), (y[pick] == 0)
    standard = (x - x.mean(0)) / x.std(0)
    baselines = {"IsolationForest": BASELINES["IsolationForest"], "kNN": knn_distance,
                 "LOF": lambda a, b, s: -LocalOutlierFactor(novelty=False).fit(a).negative_outlier_factor_,
                 **pyod_baselines(["ECOD", "COPOD"])}

    def job(seed):
        def run():
            row = {"protocol": "tabular", "seed": seed, "n": len(x), "outliers": int(outlier.sum())}
            tabular_scores = [s for s in SCORES if s not in ("complexity", "likelihood_ratio")]
            for name, s in genlab_scores(x, x, seed, (x.shape[1],), tabular_scores).items():
                row[name] = [roc_auc_score(outlier, s), average_precision_score(outlier, s)]
            for name, fn in baselines.items():
                s = fn(standard, standard, seed)
                row[name] = [roc_auc_score(outlier, s), average_precision_score(outlier, s)]
            return row
        return run

    rows = record_all([job(s) for s in seeds], OUT)
    methods = [k for k in rows[0] if k not in ("protocol", "seed", "n", "outliers")]
    lines = ["| method | AUROC | AUPRC |", "|---|---|---|"]
    for m in methods:
        lines.append(f"| {m} | {mean_sd([r[m][0] for r in rows], 3)} | {mean_sd([r[m][1] for r in rows], 3)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", choices=["oneclass", "ood", "tabular", "all"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scores", nargs="+", choices=GENLAB_SCORES, default=list(GENLAB_SCORES),
                   help="genlab scores to measure (likelihood_ratio trains a second, background model)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    SCORES[:] = args.scores
    chosen = ["oneclass", "ood", "tabular"] if args.protocol == "all" else [args.protocol]
    for name in chosen:
        print(globals()[name](args.seeds), flush=True)
    print(json.dumps({"done": chosen}))


if __name__ == "__main__":
    main()
