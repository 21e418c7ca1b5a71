"""The one trainer: exact resume after SIGKILL or Ctrl-C, NaN detection, weighted sampling, model selection."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from scipy import stats

from genlab import VAE, GenlabError, TrainConfig, TrainingDiverged, VAEConfig, fit, load_dataset
from genlab.runs import CHECKPOINT, MODEL, read_tensors
from genlab.train import epoch_order

TRAIN = ["train", "vae", "--data", "mnist5k", "--binarize", "dynamic", "--latent-dim", "4", "--conv-width", "8",
         "--epochs", "2", "--batch-size", "50", "--checkpoint-every", "10", "--seed", "3", "--no-progress"]


def genlab(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: bitwise equal sums
    return subprocess.Popen([sys.executable, "-m", "genlab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def checkpoint_step(run: Path) -> int:
    try:
        with safe_open(str(run / CHECKPOINT), "pt") as f:
            return json.loads(f.metadata()["state"])["state"]["step"]
    except Exception:
        return -1


def interrupt_when(proc, run: Path, step: int, sig) -> int:
    deadline = time.time() + 120
    while checkpoint_step(run) < step:
        assert proc.poll() is None, f"training ended before step {step}: {proc.communicate()}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return checkpoint_step(run)


def weights(run: Path) -> dict:
    return read_tensors(run / MODEL, "model")[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = genlab(*TRAIN, "--out", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def total_steps() -> int:
    return 2 * -(-3600 // 50)


def test_sigkill_then_resume_ends_with_identical_weights(reference, tmp_path):
    out = tmp_path / "run"
    proc = genlab(*TRAIN, "--out", str(out))
    killed_at = interrupt_when(proc, out, 40, signal.SIGKILL)
    assert 40 <= killed_at < total_steps() and proc.returncode == -signal.SIGKILL
    assert not (out / MODEL).exists()
    proc = genlab(*TRAIN, "--out", str(out), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    a, b = weights(reference), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_rows(out) == metrics_rows(reference)  # the log of an uninterrupted run, row for row


def metrics_rows(run: Path) -> list[dict]:
    """metrics.jsonl without its timings (the only thing a resumed run may log differently)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]


def test_ctrl_c_saves_then_resume_ends_with_identical_weights(reference, tmp_path):
    out = tmp_path / "run"
    proc = genlab(*TRAIN, "--out", str(out))
    stopped_at = interrupt_when(proc, out, 30, signal.SIGINT)
    assert proc.returncode == 130 and stopped_at < total_steps()
    assert (out / MODEL).exists()  # the weights so far are usable
    proc = genlab(*TRAIN, "--out", str(out), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    a, b = weights(reference), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_rows(out) == metrics_rows(reference)


def test_resume_drops_rows_logged_after_its_checkpoint_and_the_temporaries_of_a_killed_write(small, tmp_path):
    config = TrainConfig(epochs=2, batch_size=256, checkpoint_every=3, seed=1)
    reference = fit(tiny_vae(small), small, config, tmp_path / "reference", progress=False)
    run = tmp_path / "run"
    fit(tiny_vae(small), small, dataclasses.replace(config, epochs=1), run, progress=False)
    with open(run / "metrics.jsonl", "a") as f:  # as if killed after logging, before the next checkpoint
        f.write(json.dumps({"kind": "epoch", "epoch": 2, "step": 99, "loss": 1.0}) + "\n")
    stale = run / ".checkpoint.safetensors.4242.tmp"  # as if killed while writing a checkpoint
    stale.write_bytes(b"half")
    resumed = fit(tiny_vae(small), small, config, run, resume=True, progress=False)
    assert not stale.exists()
    assert metrics_rows(run) == metrics_rows(tmp_path / "reference")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)  # the whole history, not only the resumed part


def test_a_mistake_at_the_start_writes_nothing(small, tmp_path):
    with pytest.raises(GenlabError, match="sampling weights"):
        fit(tiny_vae(small), small, TrainConfig(epochs=1), tmp_path / "run", weights=torch.ones(3), progress=False)
    with pytest.raises(GenlabError, match="no CUDA"):
        fit(tiny_vae(small), small, TrainConfig(epochs=1, device="cuda"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def small():
    return load_dataset("digits")


def tiny_vae(data):
    torch.manual_seed(0)
    return VAE(VAEConfig.for_data(data.meta, latent_dim=2, hidden=(16,)))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small, tmp_path):
    model = tiny_vae(small)
    calls = {"n": 0}
    real_loss = model.loss

    def loss(x, y=None):
        calls["n"] += 1
        out = real_loss(x, y)
        if calls["n"] == 25:
            out["loss"] = out["loss"] * float("nan")
        return out

    model.loss = loss
    with pytest.raises(TrainingDiverged, match="nan at step 25"):
        fit(model, small, TrainConfig(epochs=3, batch_size=64, checkpoint_every=10), tmp_path / "run", progress=False)
    tensors, meta = read_tensors(tmp_path / "run" / CHECKPOINT, "checkpoint")
    assert json.loads(meta["state"])["state"]["step"] == 21  # the end of epoch 1 (21 batches of 64)
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))


def test_existing_run_is_refused_without_resume_or_force(small, tmp_path):
    config = TrainConfig(epochs=1, batch_size=256)
    fit(tiny_vae(small), small, config, tmp_path / "run", progress=False)
    with pytest.raises(GenlabError, match="--resume .* --force"):
        fit(tiny_vae(small), small, config, tmp_path / "run", progress=False)
    fit(tiny_vae(small), small, config, tmp_path / "run", force=True, progress=False)
    with pytest.raises(GenlabError, match="nothing to resume"):
        fit(tiny_vae(small), small, config, tmp_path / "other", resume=True, progress=False)


def test_weighted_order_draws_in_proportion_to_weights():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0])
    draws = torch.cat([epoch_order(5, seed=0, epoch=e, weights=w) for e in range(4000)])
    counts = torch.bincount(draws, minlength=5).numpy()
    assert counts[4] == 0
    expected = (w[:4] / w.sum() * len(draws)).numpy()
    assert stats.chisquare(counts[:4], expected).pvalue > 0.001


def test_unweighted_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = epoch_order(100, seed=1, epoch=3, weights=None)
    assert sorted(a.tolist()) == list(range(100))
    assert torch.equal(a, epoch_order(100, seed=1, epoch=3, weights=None))
    assert not torch.equal(a, epoch_order(100, seed=1, epoch=4, weights=None))


def test_weights_function_is_called_each_epoch_and_drives_sampling(small):
    seen = []

    def only_zeros(model, train):
        seen.append(len(train))
        return (train.y == 0).float()

    model = tiny_vae(small)
    drawn = []
    real_loss = model.loss
    model.loss = lambda x, y=None: (drawn.append(x), real_loss(x, y))[1]
    fit(model, small, TrainConfig(epochs=2, batch_size=128, val_fraction=0.0), weights=only_zeros, progress=False)
    assert seen == [len(small.train)] * 2
    zeros = small.train.x[small.train.y == 0]
    batch = torch.cat(drawn)
    # every drawn example is one of the zeros
    assert all((zeros == row).flatten(1).all(1).any() for row in batch[:50])


def test_bad_weights_are_refused(small):
    with pytest.raises(GenlabError, match="one per example"):
        fit(tiny_vae(small), small, TrainConfig(epochs=1, val_fraction=0.0), weights=torch.ones(3), progress=False)


def test_keep_best_restores_the_epoch_with_lowest_validation_loss(small, monkeypatch):
    import genlab.train as train

    scripted = iter([5.0, 3.0, 4.0, 6.0])
    snapshots = []

    def validation(model, *args, **kwargs):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(train, "_mean_validation_loss", validation)
    model = tiny_vae(small)
    run = fit(model, small, TrainConfig(epochs=4, batch_size=1293), progress=False)
    end = run.history[-1]
    assert end["kept_epoch"] == 2 and end["best_val_loss_nats"] == 3.0
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, snapshots[3][k]) for k, v in model.state_dict().items())


def test_patience_stops_early(small, monkeypatch):
    import genlab.train as train

    scripted = iter([5.0, 3.0, 4.0, 6.0, 7.0, 8.0])
    monkeypatch.setattr(train, "_mean_validation_loss", lambda *a, **k: next(scripted))
    run = fit(tiny_vae(small), small, TrainConfig(epochs=6, batch_size=1293, patience=2), progress=False)
    assert run.history[-1]["epochs"] == 4 and run.history[-1]["stopped_early"]


def test_bad_train_config_values():
    for bad in (dict(epochs=0), dict(lr=-1.0), dict(val_fraction=1.0), dict(device="tpu"), dict(batch_size=2.5)):
        with pytest.raises(GenlabError):
            TrainConfig(**bad)


def test_augmentation_never_touches_validation_or_test_data():
    data = load_dataset("digits", binarize="static", translate=1, rotate=15.0, scale=0.1)
    n_val = int(round(len(data.train) * 0.1))
    val_before = data.train.x[-n_val:].numpy().tobytes()
    test_before = data.test.x.numpy().tobytes()
    train_before = data.train.x.numpy().tobytes()
    model = tiny_vae(data)
    batches = []
    real_loss = model.loss
    model.loss = lambda x, y=None: (batches.append(x), real_loss(x, y))[1]
    fit(model, data, TrainConfig(epochs=2, batch_size=128), progress=False)
    assert data.train.x[-n_val:].numpy().tobytes() == val_before
    assert data.test.x.numpy().tobytes() == test_before
    assert data.train.x.numpy().tobytes() == train_before
    stored = data.train.x[:-n_val].flatten(1)
    # most augmented training batches hold images that are not any stored example
    novel = [not (stored == row.flatten()).all(1).any() for row in batches[0][:20]]
    assert sum(novel) >= 10 and set(torch.unique(batches[0]).tolist()) <= {0.0, 1.0}


def test_streamed_folder_trains_to_the_same_weights_as_in_memory(tmp_path):
    from test_data import write_folder

    (tmp_path / "imgs").mkdir()
    write_folder(tmp_path / "imgs", n=40)
    results = []
    for stream, workers in (("never", 0), ("always", 2)):
        data = load_dataset(tmp_path / "imgs", stream=stream, binarize="static")
        torch.manual_seed(0)
        model = VAE(VAEConfig.for_data(data.meta, latent_dim=2, hidden=(8,)))
        fit(model, data, TrainConfig(epochs=2, batch_size=8, workers=workers), progress=False)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_sampling_weights_near_the_float_limit_keep_their_ratios():
    import warnings

    from genlab.train import check_weights, effective_sample_size

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = check_weights(torch.tensor([1e308, 1e308, 0.0, 5e307], dtype=torch.float64), 4)
        assert weights.tolist() == [1.0, 1.0, 0.0, 0.5]
        assert effective_sample_size(weights) == pytest.approx(2.5**2 / 2.25)


def test_resume_in_python_is_held_to_the_run_as_the_cli_is(tmp_path):
    """The one resume check lives in the library: fit(resume=True) refuses another learning rate, naming it,
    and lets epochs grow and the device change."""
    data = load_dataset("digits")
    config = TrainConfig(epochs=1, batch_size=256, val_fraction=0.0, device="auto")
    torch.manual_seed(0)
    model = VAE(VAEConfig.for_data(data.meta, net="mlp", hidden=(16,), latent_dim=2))
    fit(model, data, config, tmp_path / "run", progress=False)
    with pytest.raises(GenlabError, match=r"--lr 0.01 .* differs from its train config \(0.001\)"):
        fit(model, data, dataclasses.replace(config, epochs=2, lr=0.01), tmp_path / "run", resume=True,
            progress=False)
    run = fit(model, data, dataclasses.replace(config, epochs=2, device="cpu"), tmp_path / "run", resume=True,
              progress=False)
    assert run.history[-1]["epochs"] == 2
