"""Throughput of the one trainer across processes and precisions (samples per second, whole processes).

Each configuration is a real `genlab train` command (MLP VAE 784-512-16 on mnist5k, static binarization,
global batch 100, no validation split) run to completion; the number is the median over epochs 2.. of the
global samples/s that rank 0 logs. torchrun gives each of its processes one thread (OMP_NUM_THREADS=1),
so the single-process runs are measured with 1 and with 2 threads.

    python benchmarks/scaling.py                  # CPU: 1 process (1 and 2 threads), 2 processes, bf16
On a machine with a CUDA GPU it adds fp32 and bf16 on the GPU.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

TRAIN = ["train", "vae", "--data", "mnist5k", "--binarize", "static", "--net", "mlp", "--hidden", "512",
         "--latent-dim", "16", "--epochs", "6", "--batch-size", "100", "--val-fraction", "0", "--no-progress"]


def measure(extra: list[str], threads: int | None = None) -> float:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "genlab", *TRAIN, *extra, "--out", f"{tmp}/run"], env=env, check=True,
                       capture_output=True)
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["samples_per_s"] for r in rows if r["kind"] == "epoch" and r["epoch"] > 1)


def main():
    results = {
        "cpu, 1 process, 1 thread": measure(["--device", "cpu"], threads=1),
        "cpu, 1 process, 2 threads": measure(["--device", "cpu"], threads=2),
        "cpu, 2 processes (gloo), 1 thread each": measure(["--device", "cpu", "--nproc", "2"]),
        "cpu, 1 process, 2 threads, bf16 autocast": measure(["--device", "cpu", "--precision", "bf16"], threads=2),
    }
    if torch.cuda.is_available():
        results["cuda fp32"] = measure(["--device", "cuda"])
        results["cuda bf16"] = measure(["--device", "cuda", "--precision", "bf16"])
    base = results["cpu, 1 process, 2 threads"]
    print("| configuration | samples/s | vs 1 process, 2 threads |\n|---|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x |")
    if not torch.cuda.is_available():
        print("\n(no CUDA GPU on this machine: the GPU rows are not measured)")


if __name__ == "__main__":
    main()
