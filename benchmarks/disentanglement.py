"""VAE against beta-VAE (beta = 4) on the procedural `shapes` set: reconstruction against disentanglement.

The claim checked: beta > 1 trades reconstruction for more disentangled latent variables (Higgins et al.
2017). Conv VAE, 10 latents, 30 epochs, Bernoulli decoder; MIG and DCI on the test split's codes against
the five known factors (shape, scale, rotation, x, y); mean ± sd over seeds.

    python benchmarks/disentanglement.py                 # beta 1 and 4, seeds 0 1 2
Results are appended to benchmarks/out/disentanglement.jsonl and summarised as a markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import mean_sd, record_all

from genlab import VAE, TrainConfig, VAEConfig, evaluate, fit, load_dataset
from genlab.metrics.disentanglement import disentanglement

KEYS = ("recon_loss", "kl_nats", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def run_one(beta: float, seed: int, epochs: int) -> dict:
    data = load_dataset("shapes")
    torch.manual_seed(seed)
    model = VAE(VAEConfig.for_data(data.meta, latent_dim=10, beta=beta))
    started = time.perf_counter()
    fit(model, data, TrainConfig(epochs=epochs, batch_size=64, seed=seed, device="cpu"), progress=False)
    train_s = time.perf_counter() - started
    metrics = evaluate(model, data.test.x, importance_samples=1, progress=False)
    return {"beta": beta, "seed": seed, "epochs": epochs, "train_s": round(train_s, 1),
            "recon_loss": metrics["recon_loss"], "kl_nats": metrics["kl_nats"],
            "active_units": metrics["active_units"], **disentanglement(model, data, seed=seed)}


def table(rows: list[dict]) -> str:
    lines = ["| beta | " + " | ".join(KEYS) + " | seeds |", "|---" * (len(KEYS) + 2) + "|"]
    for beta in sorted({r["beta"] for r in rows}):
        rs = [r for r in rows if r["beta"] == beta]
        cells = []
        for key in KEYS:
            cells.append(mean_sd([r[key] for r in rs], 1 if key in ("recon_loss", "kl_nats") else 3))
        lines.append(f"| {beta:g} | " + " | ".join(cells) + f" | {len(rs)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--betas", nargs="+", type=float, default=[1.0, 4.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/out/disentanglement.jsonl")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    jobs = [lambda b=beta, s=seed: run_one(b, s, args.epochs) for seed in args.seeds for beta in args.betas]
    print(table(record_all(jobs, args.out)))


if __name__ == "__main__":
    main()
