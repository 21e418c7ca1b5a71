"""Several processes through torchrun: the same weights as one process on the same global batch."""

import os
import subprocess
import sys

import pytest
import torch

from genlab.runs import MODEL, read_tensors

TRAIN = ["train", "ae", "--data", "mnist5k", "--net", "mlp", "--hidden", "32", "--latent-dim", "4", "--epochs", "2",
         "--batch-size", "100", "--val-fraction", "0", "--seed", "1", "--no-progress"]


def genlab(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "genlab", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# a flow: the model contract's newest family, trained by the same loop (on points: images are dequantized with
# noise that each process draws for its own shard, as a VAE draws its z)
FLOW = ["train", "flow", "--data", "ring8", "--hidden", "32", "--epochs", "1", "--batch-size", "500",
        "--val-fraction", "0", "--seed", "1", "--no-progress"]


@pytest.mark.parametrize("train", [TRAIN, FLOW], ids=["ae", "flow"])
def test_two_gloo_processes_match_one_process(tmp_path, train):
    genlab(*train, "--out", str(tmp_path / "one"))
    genlab(*train, "--nproc", "2", "--out", str(tmp_path / "two"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # one run directory per run
    a = read_tensors(tmp_path / "one" / MODEL, "model")[0]
    b = read_tensors(tmp_path / "two" / MODEL, "model")[0]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (k, (a[k] - b[k]).abs().max())
    rows = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert sum('"kind": "epoch"' in r for r in rows) == int(train[train.index("--epochs") + 1])  # rank 0 alone


def test_resume_refuses_another_number_of_processes(tmp_path):
    genlab(*TRAIN, "--nproc", "2", "--out", str(tmp_path / "two"))
    proc = subprocess.run([sys.executable, "-m", "genlab", "train", "ae", "--out", str(tmp_path / "two"), "--resume",
                           "--epochs", "3", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--nproc 2" in proc.stderr


SCRIPT = """
import sys
import torch
from genlab import AE, AEConfig, TrainConfig, fit, load_dataset

data = load_dataset("mnist5k")
torch.manual_seed(1)
model = AE(AEConfig.for_data(data.meta, net="mlp", hidden=(32,), latent_dim=4))
# zeros drawn ten times as often, recomputed every epoch (the debiasing mechanism)
weights = lambda model, train: 1.0 + 9.0 * (train.y == 0).float()
fit(model, data, TrainConfig(epochs=2, batch_size=100, val_fraction=0.0, seed=1), sys.argv[1], weights=weights,
    progress=False)
"""


def test_weighted_sampling_is_the_same_in_two_processes(tmp_path):
    script = tmp_path / "weighted.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env, check=True, timeout=600)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                    str(tmp_path / "two")], env=env, check=True, timeout=600, capture_output=True)
    a = read_tensors(tmp_path / "one" / MODEL, "model")[0]
    b = read_tensors(tmp_path / "two" / MODEL, "model")[0]
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)
