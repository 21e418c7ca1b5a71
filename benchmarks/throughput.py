"""Training throughput of genlab.fit against a plain hand-written PyTorch loop, and peak memory.

Same network (the 784-512-16 MLP VAE), batch size 100, Adam 1e-3, mnist5k (static binarization),
the data held in memory as one tensor in both. Blocks of epochs alternate (plain, genlab, plain, ...),
each in a fresh process; the ratio is the median over paired epochs of genlab's samples/s over the
plain loop's. genlab is measured twice: in memory (no run directory) and writing a run directory
(checkpoint at every epoch end, metrics log), whose wall time includes that I/O and validation.

    python benchmarks/throughput.py                # 3 rounds of 10 epochs each
    python benchmarks/throughput.py --threads 1    # one core
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def plain_loop(epochs: int) -> list[float]:
    from genlab import VAE, VAEConfig, load_dataset

    data = load_dataset("mnist5k", binarize="static")
    torch.manual_seed(0)
    model = VAE(VAEConfig.for_data(data.meta, net="mlp", hidden=(512,), latent_dim=16))
    encoder, decoder = model.encoder, model.decoder
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all = data.train.x
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        for index in torch.randperm(len(x_all)).split(100):
            x = x_all[index]
            mu, log_var = encoder(x).chunk(2, dim=-1)
            std = torch.exp(0.5 * log_var)
            z = mu + std * torch.randn_like(std)
            logits = decoder(z)
            recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            kl = 0.5 * (mu**2 + std**2 - 1 - log_var).sum()
            loss = (recon + kl) / len(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(len(x_all) / (time.perf_counter() - started))
    return rates


def genlab_fit(epochs: int, with_run_dir: bool) -> tuple[list[float], float]:
    from genlab import VAE, TrainConfig, VAEConfig, fit, load_dataset

    data = load_dataset("mnist5k", binarize="static")
    torch.manual_seed(0)
    model = VAE(VAEConfig.for_data(data.meta, net="mlp", hidden=(512,), latent_dim=16))
    config = TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, val_fraction=0.0 if not with_run_dir else 0.1,
                         device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = fit(model, data, config, f"{tmp}/run" if with_run_dir else None, progress=False)
        wall = time.perf_counter() - started
    rates = [row["samples_per_s"] for row in run.history if row["kind"] == "epoch"]
    n = len(data.train) if not with_run_dir else int(len(data.train) * 0.9)
    return rates, n * epochs / wall


def block(variant: str, epochs: int) -> dict:
    if variant == "plain":
        rates, overall = plain_loop(epochs), None
    else:
        rates, overall = genlab_fit(epochs, with_run_dir=variant == "genlab-run")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "rates": rates, "overall_samples_per_s": overall, "peak_rss_mib": peak_mib}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--block", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.block:
        print(json.dumps(block(args.block, args.epochs)))
        return
    results: dict[str, list[dict]] = {"plain": [], "genlab": [], "genlab-run": []}
    for _ in range(args.rounds):
        for variant in results:
            cmd = [sys.executable, __file__, "--block", variant, "--epochs", str(args.epochs)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[variant].append(json.loads(out))
    # the first epoch of each block warms up; pair the rest position by position
    plain = [r for b in results["plain"] for r in b["rates"][1:]]
    summary = {"threads": torch.get_num_threads(), "epochs_per_block": args.epochs, "rounds": args.rounds}
    for variant in ("genlab", "genlab-run"):
        rates = [r for b in results[variant] for r in b["rates"][1:]]
        summary[f"{variant}_ratio_median"] = statistics.median(g / p for g, p in zip(rates, plain))
        summary[f"{variant}_samples_per_s"] = statistics.median(rates)
        summary[f"{variant}_peak_rss_mib"] = max(b["peak_rss_mib"] for b in results[variant])
    summary["genlab-run_overall_samples_per_s"] = statistics.median(
        b["overall_samples_per_s"] for b in results["genlab-run"])
    summary["plain_samples_per_s"] = statistics.median(plain)
    summary["plain_peak_rss_mib"] = max(b["peak_rss_mib"] for b in results["plain"])
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
