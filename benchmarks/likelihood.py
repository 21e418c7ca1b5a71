"""Test NLL on mnist5k: the plain VAE and genlab's best configuration, mean ± sd over seeds.

Protocol (the foundation issue's): mnist5k, static binarization (x > 0.5), the DESIGN.md split
(4,000 train / 1,000 test), test NLL = IWAE bound with K = 1000 importance samples, in nats.
Anchor measured on this machine with the same protocol: pythae VAE 92.20, IWAE (K=5) 90.35, VampPrior 90.53.

    python benchmarks/likelihood.py                      # both configurations, seeds 0 1 2
    python benchmarks/likelihood.py --configs plain --seeds 0
Results are appended to benchmarks/out/likelihood.jsonl and summarised as a markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import mean_sd, record_all

from genlab import VAE, TrainConfig, VAEConfig, evaluate, fit, load_dataset
from genlab.recipes import recipe

CONFIGS = {
    # pythae's anchor network and budget: 784-512-16 MLP, Adam 1e-3, batch 100, 50 epochs, all 4,000 images
    "plain": dict(
        data=dict(binarize="static"),
        model=dict(net="mlp", hidden=(512,), latent_dim=16),
        train=dict(epochs=50, batch_size=100, lr=1e-3, val_fraction=0.0),
    ),
    # the same with genlab's default model selection: 10% of the training split held out, best epoch kept
    "plain-val": dict(
        data=dict(binarize="static"),
        model=dict(net="mlp", hidden=(512,), latent_dim=16),
        train=dict(epochs=50, batch_size=100, lr=1e-3),
    ),
    # genlab's defaults: `genlab train vae --data mnist5k --binarize static` (conv nets, 50 epochs, 10% validation)
    "default": dict(data=dict(binarize="static"), model=dict(), train=dict()),
    # the `likelihood` recipe: IWAE (K=20), 1-pixel random translations, validation-based model selection
    "best": {**recipe("likelihood", "vae"), "data": {**recipe("likelihood", "vae")["data"], "binarize": "static"}},
}


def run_one(name: str, seed: int, importance_samples: int) -> dict:
    c = CONFIGS[name]
    data = load_dataset("mnist5k", **c["data"])
    torch.manual_seed(seed)
    model = VAE(VAEConfig.for_data(data.meta, **{k: tuple(v) if isinstance(v, list) else v
                                                  for k, v in c["model"].items()}))
    started = time.perf_counter()
    run = fit(model, data, TrainConfig(seed=seed, device="cpu", **c["train"]), progress=False)
    train_s = time.perf_counter() - started
    result = evaluate(model, data.test.x, importance_samples=importance_samples, progress=False)
    end = run.history[-1]
    return {"config": name, "seed": seed, "train_s": round(train_s, 1), "epochs": end["epochs"],
            "kept_epoch": end["kept_epoch"], "threads": torch.get_num_threads(), **result}


def table(rows: list[dict]) -> str:
    lines = ["| configuration | test NLL (nats, K=1000) | test ELBO (nats) | bits/dim | train time (s) | seeds |",
             "|---|---|---|---|---|---|"]
    for name in CONFIGS:
        rs = [r for r in rows if r["config"] == name]
        if not rs:
            continue

        def stat(key, digits=2, rs=rs):
            return mean_sd([r[key] for r in rs], digits)

        lines.append(f"| {name} | {stat('nll_nats')} | {stat('elbo_nats')} | {stat('bits_per_dim', 4)} | "
                     f"{stat('train_s', 0)} | {len(rs)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--importance-samples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the pythae anchor used 1)")
    p.add_argument("--out", default="benchmarks/out/likelihood.jsonl")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    jobs = [lambda c=name, s=seed: run_one(c, s, args.importance_samples)
            for name in args.configs for seed in args.seeds]
    print(table(record_all(jobs, args.out)))


if __name__ == "__main__":
    main()
