"""GANs on the 2-D mixtures and mnist5k, with the sample-quality metrics of genlab.metrics.quality.

Each configuration is a GANConfig + TrainConfig on one dataset; every run is timed (training only) and
scored with `quality` (modes / high quality / reverse KL on the mixtures; fd, fd_floor, precision, recall,
density, coverage, classes covered on mnist5k). mean ± sd over seeds.

    python benchmarks/gan.py --configs grid25 ring8 --seeds 0 1 2       # the mixtures (default GAN settings)
    python benchmarks/gan.py --configs mnist5k vae-mnist5k --seeds 0 1 2 # images, a VAE beside the GAN
    python benchmarks/gan.py --configs grid25 grid25-no-ema grid25-no-sn grid25-ns grid25-wgan-gp ...  # ablation
Results are appended to benchmarks/out/gan.jsonl and summarised as a markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import mean_sd, record_all

from genlab import GAN, VAE, GANConfig, TrainConfig, VAEConfig, fit, load_dataset
from genlab.metrics.quality import quality
from genlab.recipes import recipe

MIXTURE_GAN = recipe("gan-mixture", "gan")["model"]
MIXTURE_TRAIN = recipe("gan-mixture", "gan")["train"]
IMAGE_TRAIN = {"epochs": 150, "batch_size": 64, "lr_schedule": "cosine"}

# name: (dataset, family, model overrides, train overrides)
CONFIGS = {
    "grid25": ("grid25", "gan", MIXTURE_GAN, MIXTURE_TRAIN),
    "ring8": ("ring8", "gan", MIXTURE_GAN, MIXTURE_TRAIN),
    # ablations: one stabiliser changed at a time from the recipe
    "grid25-no-ema": ("grid25", "gan", {**MIXTURE_GAN, "ema": 0.0}, MIXTURE_TRAIN),
    "grid25-no-r1": ("grid25", "gan", {**MIXTURE_GAN, "r1": 0.0}, MIXTURE_TRAIN),
    "grid25-sn": ("grid25", "gan", {**MIXTURE_GAN, "spectral_norm": True, "r1": 0.0}, MIXTURE_TRAIN),
    "grid25-hinge-sn-ttur": ("grid25", "gan", {**MIXTURE_GAN, "loss": "hinge", "spectral_norm": True, "r1": 0.0,
                                               "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0}, MIXTURE_TRAIN),
    "grid25-constant-lr": ("grid25", "gan", MIXTURE_GAN, {**MIXTURE_TRAIN, "lr_schedule": "constant"}),
    "grid25-wgan-gp": ("grid25", "gan", {**MIXTURE_GAN, "loss": "wgan_gp", "r1": 0.0, "n_critic": 5}, MIXTURE_TRAIN),
    "mnist5k": ("mnist5k", "gan", {}, IMAGE_TRAIN),
    "mnist5k-no-diffaugment": ("mnist5k", "gan", {"diffaugment": False}, IMAGE_TRAIN),
    "mnist5k-no-ema": ("mnist5k", "gan", {"ema": 0.0}, IMAGE_TRAIN),
    "vae-mnist5k": ("mnist5k", "vae", {}, {"epochs": 50, "batch_size": 100}),
}
KEYS = ("modes", "high_quality", "reverse_kl", "fd", "fd_floor", "precision", "recall", "density", "coverage",
        "classes_covered", "train_s")


def run_one(name: str, seed: int, epochs: int | None) -> dict:
    dataset, family, model_overrides, train_overrides = CONFIGS[name]
    data = load_dataset(dataset)
    torch.manual_seed(seed)
    if family == "gan":
        model = GAN(GANConfig.for_data(data.meta, **model_overrides))
    else:
        model = VAE(VAEConfig.for_data(data.meta, **model_overrides))
    train = {**getattr(model, "train_defaults", {}), **train_overrides, "seed": seed, "device": "cpu"}
    if epochs:
        train["epochs"] = epochs
    started = time.perf_counter()
    run = fit(model, data, TrainConfig(**train), progress=False)
    train_s = time.perf_counter() - started
    monitor = [r for r in run.history if r.get("kind") == "monitor"]
    return {"config": name, "seed": seed, "epochs": train["epochs"], "train_s": round(train_s, 1),
            "threads": torch.get_num_threads(), **quality(model, data, seed=seed),
            "monitor": [{k: v for k, v in r.items() if k != "kind"} for r in monitor]}


def table(rows: list[dict]) -> str:
    keys = [k for k in KEYS if any(r.get(k) is not None for r in rows)]
    lines = ["| config | " + " | ".join(keys) + " | seeds |", "|---" * (len(keys) + 2) + "|"]
    for name in dict.fromkeys(r["config"] for r in rows):
        rs = [r for r in rows if r["config"] == name]
        cells = []
        for key in keys:
            values = [r[key] for r in rs if r.get(key) is not None]
            digits = 1 if key in ("modes", "classes_covered", "train_s") else 3
            cells.append(mean_sd(values, digits) if values else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(rs)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["grid25", "ring8"], choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="override every config's epochs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/out/gan.jsonl")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    jobs = [lambda c=name, s=seed: run_one(c, s, args.epochs) for seed in args.seeds for name in args.configs]
    print(table(record_all(jobs, args.out)))


if __name__ == "__main__":
    main()
