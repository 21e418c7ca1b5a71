"""The one training loop for every family.

A model says *what* it optimises (`model.objectives()`: parameters, a loss of a batch, an optimiser
setting, a step ratio); `fit` says *how*: seeds, data order (optionally weighted per example), optimisers,
progress bar, metrics log, checkpoints, resume, Ctrl-C, NaN detection, model selection on a validation split.

Resume is exact on CPU: a checkpoint holds the weights, optimiser state, RNG state and the current epoch's
data order, so a run killed and resumed ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from genlab import files, pictures, runs
from genlab.configs import build_config, require, whole
from genlab.data.core import Dataset, Split, augment
from genlab.distributed import World
from genlab.errors import GenlabError, TrainingDiverged, TrainingInterrupted, article
from genlab.models.base import MAX_LR, REWEIGHTS, VALIDATES, Objective, can, evaluating
from genlab.sampling import check_weights, effective_sample_size, epoch_order

Device = Literal["auto", "cpu", "cuda"]
DEVICES = get_args(Device)
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = get_args(Precision)
Schedule = Literal["constant", "cosine"]
SCHEDULES = get_args(Schedule)
MAX_EPOCHS = 1_000_000  # far past any training that ends; 1e9 would only run until killed
Weights = torch.Tensor | Callable[[torch.nn.Module, Split], torch.Tensor] | None


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50  # passes over the training split
    batch_size: int = 100  # examples per optimiser step (over all processes)
    lr: float = 1e-3  # Adam's learning rate
    lr_schedule: Schedule = "constant"  # constant | cosine (from lr down to 0 over all planned steps)
    weight_decay: float = 0.0  # Adam's L2 penalty on the weights
    seed: int = 0  # initial weights, data order and noise: the same seed, the same run
    val_fraction: float = 0.1  # the last part of the training split, held out for model selection
    keep_best: bool = True  # keep the weights of the epoch with the lowest validation loss
    patience: int | None = None  # stop after this many epochs without a better validation loss
    val_importance_samples: int = 0  # 0: validate on -ELBO; K > 0: on the IWAE_K bound
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at every epoch end
    log_every: int = 50  # steps between step rows in metrics.jsonl
    monitor_every: int = 500  # steps between cheap sample-quality numbers in metrics.jsonl (0: never)
    epoch_pictures: bool = True  # a sample picture per epoch in RUN/epochs/
    device: Device = "auto"  # auto | cpu | cuda
    tensorboard: bool = False  # also log scalars and sample grids to RUN/tensorboard (pip install genlab[tensorboard])
    precision: Precision = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler, CUDA only)
    workers: int = 0  # DataLoader worker processes for data streamed from disk

    def __post_init__(self):
        def check(ok, message):
            if not ok:
                raise GenlabError(message + ".")
        require(whole(self.epochs, 1, MAX_EPOCHS),
                f"epochs must be an integer from 1 to {MAX_EPOCHS}, not {self.epochs!r}")
        require(whole(self.batch_size, 1, 2**24),
                f"batch_size must be an integer from 1 to 2^24, not {self.batch_size!r}")
        require(0 < self.lr <= MAX_LR, f"lr must be in (0, {MAX_LR}], not {self.lr}")
        require(self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {', '.join(SCHEDULES)}")
        require(0 <= self.weight_decay <= MAX_LR, f"weight_decay must be in [0, {MAX_LR}], not {self.weight_decay}")
        require(whole(self.seed, 0, 2**32 - 1), f"seed must be an integer from 0 to 2^32 - 1, "
              f"not {self.seed!r}")
        require(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), not {self.val_fraction}")
        require(self.patience is None or whole(self.patience, 1), "patience must be a positive integer or null")
        require(whole(self.val_importance_samples, 0, 100_000),
              "val_importance_samples must be an integer from 0 to 100000")
        require(whole(self.checkpoint_every, 1), "checkpoint_every must be a positive integer")
        require(whole(self.log_every, 1), "log_every must be a positive integer")
        require(whole(self.monitor_every, 0), "monitor_every must be an integer >= 0")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, not '{self.device}'")
        require(self.precision in PRECISIONS,
                f"precision must be one of {', '.join(PRECISIONS)}, not '{self.precision}'")
        require(whole(self.workers, 0, 256), "workers must be an integer from 0 to 256")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return build_config(cls, values, "train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GenlabError("--device cuda was asked for, but this machine has no CUDA GPU that PyTorch can use.")
    return torch.device(name)


def split_validation(train: Split, fraction: float) -> tuple[Split, Split | None]:
    """The last `fraction` of the (already shuffled) training split becomes the validation split."""
    n_val = int(round(len(train) * fraction))
    if n_val == 0:
        return train, None
    if n_val >= len(train):
        raise GenlabError(f"val_fraction {fraction} leaves no training examples out of {len(train)}.")
    n = len(train) - n_val
    return train.subset(slice(0, n)), train.subset(slice(n, None))


def learning_rate_factor(schedule: str, step: int, total_steps: int) -> float:
    """The multiplier of the base learning rate at `step` (0-based) of `total_steps`."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return 1.0


@dataclass
class _State:
    step: int = 0
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch done
    best_val: float = math.inf
    best_epoch: int | None = None
    stale_epochs: int = 0
    stop_reason: str | None = None
    # the current epoch's running sums, so that an epoch resumed half-way logs the row an uninterrupted one would
    epoch_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    epoch_batches: int = 0
    epoch_examples: int = 0
    epoch_seconds: float = 0.0
    log_rows: int = 0  # rows in metrics.jsonl when the checkpoint was written: a resume keeps exactly these


class _StopFlag:
    """Turns Ctrl-C (and SIGTERM) into a flag the loop checks between steps, so a step is never cut in half."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def fit(
    model: torch.nn.Module,
    data: Dataset | np.ndarray | torch.Tensor,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    weights: Weights = None,
    progress: bool = True,
) -> runs.Run:
    """Train `model` on `data.train` (or on every row of an array or tensor); with `out`, write and checkpoint a
    run directory there.

    weights: per-example sampling weights for the training split (a tensor), or a function
    (model, train split) -> weights (None: uniform) called at the start of every epoch; rare examples drawn more
    often. Without them, a model that REWEIGHTS draws by its own `sampling_weights`.
    """
    from genlab.data.load import as_dataset

    data = as_dataset(data)
    config = config or TrainConfig(**getattr(model, "train_defaults", {}))
    weights = _weights_source(model, weights)
    world, device = World.from_environment(resolve_device(config.device))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(world.close)
        return _fit(model, data, config, out, resume, force, weights, progress, world, device, cleanup)


def check_start(model, data: Dataset, config: TrainConfig, out=None, *, resume: bool = False, force: bool = False,
                weights: Weights = None, processes: int = 1) -> tuple[dict, torch.Tensor | None]:
    """Every check a training start can fail, run before anything is written or deleted: a mistake found
    here leaves `out` as it was. Returns the run's config.json and, for weights a function computes, the
    first epoch's weights (already checked). processes: how many will train (a resume must match)."""
    if config.precision == "fp16" and resolve_device(config.device).type != "cuda":
        raise GenlabError("fp16 needs a CUDA GPU; on CPU use --precision bf16 or fp32.")
    if config.val_fraction > 0 and not can(model, VALIDATES):
        raise GenlabError(f"{article(model.family)} has no validation loss to select epochs by; "
                          "train it with val_fraction 0 (--val-fraction 0).")
    weights = _weights_source(model, weights)
    if weights is not None and not callable(weights):
        weights = check_weights(weights, len(data.train))
    run_config = {
        "genlab_version": runs.genlab_version(),
        "torch_version": torch.__version__,
        "family": model.family,
        "model": model.config.to_dict(),
        "data": data.spec.to_dict() if data.spec is not None else None,
        "data_meta": dataclasses.asdict(data.meta),
        "train": config.to_dict(),
        "sampling_weights": _weights_fingerprint(weights),
    }
    if out is not None:
        runs.check_run_dir(Path(out), resume=resume, force=force)
        if resume:
            _check_same_run(runs.read_config(Path(out)), run_config, Path(out))
            _check_checkpoint(Path(out) / runs.CHECKPOINT, config, processes)
    elif resume:
        raise GenlabError("resume needs the run directory (out) to resume from.")
    model.check_data(data.train.x, data.train.y)  # after the run's identity: a resume on other data says so
    if config.tensorboard:
        _tensorboard_writer_class(out)
    first_weights = None
    if callable(weights) and not resume:  # a resumed run recomputes them for the epoch it continues
        first_weights = _epoch_weights(weights, model, split_validation(data.train, config.val_fraction)[0])
    return run_config, first_weights


def _weights_source(model, weights: Weights) -> Weights:
    """The weights given, or (none given) the model's own when it REWEIGHTS."""
    if weights is None and can(model, REWEIGHTS):
        return lambda m, split: m.sampling_weights(split)
    return weights


def _epoch_weights(weights, model, split: Split) -> torch.Tensor | None:
    """An epoch's weights from a weights function, checked; None for uniform draws."""
    w = weights(model, split)
    model.train()
    return None if w is None else check_weights(w, len(split))


def _check_checkpoint(file: Path, config: TrainConfig, processes: int) -> None:
    """Refuse a resume the checkpoint cannot continue: another process count, or fewer epochs than it has done."""
    names, metadata = runs.read_tensor_names(file, "checkpoint")
    written_by = sum(k.startswith("rng.cpu.") for k in names)
    try:
        done = json.loads(metadata["state"])["state"]["epoch"]
    except (KeyError, TypeError, ValueError, RecursionError):
        done = None
    if written_by == 0 or not isinstance(done, int) or isinstance(done, bool):
        raise GenlabError(f"the checkpoint '{file}' is incomplete or from another version; train a new run.")
    if written_by != processes:
        raise GenlabError(f"the checkpoint '{file}' was written by {written_by} process(es); resume it with "
                          f"--nproc {written_by}, not {processes}.")
    if config.epochs < done:
        raise GenlabError(f"the run has already trained {done} epochs, more than the --epochs {config.epochs} given "
                          f"now; give --epochs {done} or more to continue it.")


def _weights_fingerprint(weights: Weights) -> str | None:
    """What config.json records of the sampling weights, so that a resume with other weights is refused."""
    if weights is None:
        return None
    if callable(weights):
        return "recomputed by the model every epoch"
    import hashlib

    return "sha256:" + hashlib.sha256(weights.numpy().tobytes()).hexdigest()


def _open_run_dir(path: Path, run_config: dict, resume: bool, force: bool, world: World, cleanup) -> None:
    """Lock the run folder, then (and only then) clear a forced run's files and write config.json."""
    failure = None
    if world.main:
        try:
            path.mkdir(parents=True, exist_ok=True)
            cleanup.callback(runs.RunLock(path).acquire().release)
        except GenlabError as e:
            failure = e
    _, failed = world.agree(torch.zeros(()), failure is not None)  # every rank learns whether rank 0 could lock
    if failure is not None:
        raise failure
    if failed:
        raise GenlabError(f"another genlab process is training into '{path}'.")
    if world.main:
        files.remove_stale_temporaries(path, runs.RUN_FILES)  # left by a kill during a write
        if not resume:
            if force:
                runs.clear_run_dir(path)
            files.write_json(path / runs.CONFIG, run_config)
    world.barrier()


@dataclass
class _Learner:
    """One objective and what trains it: its optimiser, base learning rate, runner (DDP-wrapped) and scaler."""

    objective: Objective
    optimizer: torch.optim.Optimizer
    base_lr: float
    runner: object
    scaler: torch.amp.GradScaler | None


@dataclass
class _Training:
    """What the steps of one training share: the model and data, where it writes, the state it checkpoints."""

    model: torch.nn.Module
    data: Dataset
    config: TrainConfig
    path: Path | None  # where checkpoints are read; only rank 0 writes
    world: World
    device: torch.device
    learners: list[_Learner]
    train: Split
    val: Split | None
    x_train: object = None  # the training inputs on the device (or the stream that reads them from disk)
    y_train: torch.Tensor | None = None
    state: _State = dataclasses.field(default_factory=_State)
    best: dict | None = None  # the weights of the best epoch so far (validation)
    order: torch.Tensor | None = None  # this epoch's example order
    log: _MetricsLog | None = None

    @property
    def writes(self) -> Path | None:
        return self.path if self.world.main else None

    def checkpoint(self) -> None:
        if self.path is not None:
            rng = self.world.gather(torch.get_rng_state())  # collective: every rank takes part
            self.state.log_rows = len(self.log.rows)
            if self.world.main:
                _save_checkpoint(self.path / runs.CHECKPOINT, self.model, [le.optimizer for le in self.learners],
                                 self.state, self.best, self.order, rng)


def _fit(model, data, config, out, resume, force, weights, progress, world: World, device, cleanup) -> runs.Run:
    run_config, first_weights = check_start(model, data, config, out, resume=resume, force=force, weights=weights,
                                            processes=world.size)
    train, val = split_validation(data.train, config.val_fraction)
    writer_class = _tensorboard_writer_class(out) if config.tensorboard else None
    path = None if out is None else Path(out)
    if path is not None:
        _open_run_dir(path, run_config, resume, force, world, cleanup)
    torch.manual_seed(config.seed + world.rank)  # ranks draw different noise for their shards
    model.to(device).train()
    t = _Training(model, data, config, path, world, device, _learners(model, config, world, device), train, val,
                  x_train=train.x.to(device), y_train=None if train.y is None else train.y.to(device))
    logged = _restore(t) if resume else []
    t.log = _MetricsLog(t.writes, writer_class(str(path / "tensorboard")) if writer_class and t.writes else None,
                        logged)
    # weights index the dataset's training split; the validation part (its last examples) is never drawn
    static = None if weights is None or callable(weights) else check_weights(weights, len(data.train))[: len(train)]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=t.state.step, disable=not progress or not world.main,
               file=sys.stderr, dynamic_ncols=True, desc=f"train {model.family}", unit="step")
    with _StopFlag() as stop, bar:
        while t.state.epoch < config.epochs and t.state.stop_reason is None:
            ess = None
            if t.order is None:
                w = static
                if first_weights is not None:  # computed (and checked) before the run folder was touched
                    w, first_weights = first_weights, None
                elif callable(weights):
                    w = _epoch_weights(weights, model, train)
                ess = _begin_epoch(t, w)
            seconds = _run_epoch(t, steps_per_epoch, bar, stop)
            _end_epoch(t, seconds, ess, bar)
    return _finish(t, run_config)


def _learners(model, config: TrainConfig, world: World, device) -> list[_Learner]:
    """An Adam optimiser (and, for fp16, a gradient scaler) per objective of the model."""
    learners = []
    for o in model.objectives():
        lr = o.lr or config.lr
        optimizer = torch.optim.Adam(o.parameters, lr=lr, betas=o.betas, weight_decay=config.weight_decay)
        # fp32 takes no scaler at all: nothing extra on the hot path
        scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        learners.append(_Learner(o, optimizer, lr, world.wrap(o, device), scaler))
    return learners


def _restore(t: _Training) -> list[dict]:
    """Resume from the checkpoint: weights, optimisers, RNG, the epoch's order; metrics.jsonl cut back to the rows
    logged before it (they are logged again, exactly as before). Returns those rows."""
    t.state, t.best, t.order = _load_checkpoint(t.path / runs.CHECKPOINT, t.model,
                                                [le.optimizer for le in t.learners], t.world)
    n = len(t.train)
    if t.state.batch > math.ceil(n / t.config.batch_size):
        raise GenlabError(f"the checkpoint in '{t.path}' is damaged: it is {t.state.batch} batches into an epoch of "
                          f"{math.ceil(n / t.config.batch_size)}.")
    if t.order is not None and (len(t.order) != n or t.order.min() < 0 or t.order.max() >= n):
        raise GenlabError(f"the checkpoint in '{t.path}' is damaged: its data order does not fit the {n} training "
                          "examples.")
    logged = runs.read_metrics(t.path)[: t.state.log_rows]
    if t.world.main:
        files.write_text(t.path / runs.METRICS, "".join(files.dumps(r) + "\n" for r in logged))
    return logged


def _begin_epoch(t: _Training, weights: torch.Tensor | None) -> float | None:
    """This epoch's example order, drawn by the weights when there are any; returns their effective size."""
    n = len(t.train)
    ess = None
    if weights is not None:
        ess = effective_sample_size(weights.numpy())
        if ess < 0.05 * n and t.world.main:
            tqdm.write(f"warning: the sampling weights of epoch {t.state.epoch + 1} rest on about {ess:.0f} of {n} "
                       "examples (effective sample size)", file=sys.stderr)
    t.order = epoch_order(n, t.config.seed, t.state.epoch, weights).to(t.device)
    return ess


def _run_epoch(t: _Training, steps_per_epoch: int, bar, stop: _StopFlag) -> float:
    """The epoch's remaining steps (all of them, unless resumed half-way); returns the seconds they took."""
    config, state, bs = t.config, t.state, t.config.batch_size
    autocast = contextlib.nullcontext() if config.precision == "fp32" else torch.autocast(
        t.device.type, dtype=torch.bfloat16 if config.precision == "bf16" else torch.float16)
    started = time.perf_counter()
    first = state.batch
    batches = [t.order[b * bs : (b + 1) * bs] for b in range(first, steps_per_epoch)]
    reads = _read(t.x_train, batches, t.world, config.workers, t.device)
    for b, batch, (index, x) in zip(range(first, steps_per_epoch), batches, reads):
        x = augment(x, t.data.meta)
        y = None if t.y_train is None else t.y_train[index]
        factor = learning_rate_factor(config.lr_schedule, state.step, config.epochs * steps_per_epoch)
        for learner in t.learners:
            learner.optimizer.param_groups[0]["lr"] = learner.base_lr * factor
        with autocast:
            values, stopping = _step(t.learners, x, y, state, t.path, t.world, stop.signum is not None)
        for k, v in values.items():
            state.epoch_sums[k] = state.epoch_sums.get(k, 0.0) + v
        state.epoch_examples += len(batch)
        state.epoch_batches += 1
        state.step += 1
        state.batch = b + 1
        bar.update()
        _log_step(t, values, bar)
        if stopping:
            state.epoch_seconds += time.perf_counter() - started
            t.checkpoint()
            if t.world.main:
                _write_best(t.path, t.model, t.best)
            where = f" Resume with: genlab train ... --out {t.path} --resume" if t.path else ""
            raise TrainingInterrupted(f"training stopped at step {state.step}; a checkpoint was saved.{where}")
        if state.step % config.checkpoint_every == 0:
            state.epoch_seconds += time.perf_counter() - started
            started = time.perf_counter()
            t.checkpoint()
    return state.epoch_seconds + time.perf_counter() - started


def _log_step(t: _Training, values: dict, bar) -> None:
    """A step row every log_every steps, quality numbers every monitor_every."""
    state, config = t.state, t.config
    if config.monitor_every and state.step % config.monitor_every == 0 and t.world.main:
        from genlab.metrics.quality import monitor

        t.log.write({"kind": "monitor", "step": state.step, "epoch": state.epoch + 1, **monitor(t.model, t.data)})
    if state.step % config.log_every == 0:
        t.log.write({"kind": "step", "step": state.step, "epoch": state.epoch + 1, **values})
        bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)


def _end_epoch(t: _Training, seconds: float, ess: float | None, bar) -> None:
    """The epoch's row (mean losses, speed, validation loss), model selection, the epoch picture, a checkpoint."""
    state = t.state
    row = {"kind": "epoch", "epoch": state.epoch + 1, "step": state.step}
    row.update({k: v / max(1, state.epoch_batches) for k, v in state.epoch_sums.items()})
    row["samples_per_s"] = state.epoch_examples / seconds if seconds > 0 else None
    if ess is not None:
        row["sampling_ess"] = ess
    if t.val is not None:
        row["val_loss_nats"] = _mean_validation_loss(t.model, t.val, t.config, t.device)
        t.model.train()
        t.best = _select(t.model, state, row["val_loss_nats"], t.config, t.best)
    state.epoch += 1
    state.batch = 0
    state.epoch_sums, state.epoch_batches, state.epoch_examples, state.epoch_seconds = {}, 0, 0, 0.0
    t.order = None
    t.log.write(row)
    t.log.images(t.model, t.data.meta.kind, state.epoch)
    if t.config.epoch_pictures and t.writes is not None:
        _epoch_picture(t.model, t.data, t.writes, state.epoch)
    bar.set_postfix(epoch=state.epoch, loss=f"{row.get('loss', math.nan):.4g}", refresh=True)
    t.checkpoint()


def _finish(t: _Training, run_config: dict) -> runs.Run:
    """Keep the chosen epoch's weights, let the model fit what it fits after training, log the end, save."""
    state, model = t.state, t.model
    if t.best is not None:
        model.load_state_dict(t.best)
    model.eval()
    model.fit_end(t.data.train.x.to(t.device))
    t.log.write({
        "kind": "end",
        "step": state.step,
        "epochs": state.epoch,
        "kept_epoch": state.best_epoch if t.best is not None else state.epoch,
        "kept_because": "lowest validation loss" if t.best is not None else "last epoch",
        "best_val_loss_nats": state.best_val if t.val is not None else None,
        "stopped_early": state.stop_reason,
    })
    if t.writes is not None:
        runs.save_model(t.path / runs.MODEL, model)
        pictures.save_run_pictures(model, t.data, t.path)
    t.world.barrier()
    return runs.Run(model, run_config, t.path, t.log.rows)


def _epoch_picture(model, data: Dataset, path: Path, epoch: int) -> None:
    """RUN/epochs/epoch_NNNN.png: the same noise decoded after every epoch, to watch training (and collapse)."""
    with evaluating(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        samples = model.sample(64 if data.meta.kind == "image" else 1000, generator=torch.Generator().manual_seed(0))
    reference = None if data.meta.kind == "image" else data.test.x[:1000]
    file = runs.run_subfolder(path, "epochs") / f"epoch_{epoch:04d}.png"
    pictures.save_samples_picture(samples.cpu(), data.meta.kind, file, reference, fast=True)


def _select(model, state: _State, val_loss: float, config: TrainConfig, best):
    """Model selection after an epoch: remember the best weights, count epochs without progress."""
    if val_loss < state.best_val:
        state.best_val, state.best_epoch, state.stale_epochs = val_loss, state.epoch + 1, 0
        return {k: v.detach().clone() for k, v in model.state_dict().items()} if config.keep_best else best
    state.stale_epochs += 1
    if config.patience is not None and state.stale_epochs >= config.patience:
        state.stop_reason = f"no better validation loss for {config.patience} epochs"
    return best


def _read(x_train, batches: list[torch.Tensor], world: World, workers: int, device):
    """(this rank's example indices, their inputs on the device) for each global batch, in order.

    Tensors in memory are indexed directly; data streamed from disk goes through a DataLoader whose
    workers decode the same batches, in the same order.
    """
    shards = [world.shard(batch) for batch in batches]
    if torch.is_tensor(x_train):
        return ((index, x_train[index]) for index in shards)
    loader = x_train.loader([s.tolist() for s in shards], workers, pin_memory=device.type == "cuda")
    return ((index, x.to(device, non_blocking=True)) for index, x in zip(shards, loader))


def _step(learners: list[_Learner], x, y, state: _State, path, world: World, stop: bool):
    """One update of each objective due at this step; returns the logged values and whether to stop."""
    values: dict[str, float] = {}
    for learner in learners:
        objective, optimizer, scaler = learner.objective, learner.optimizer, learner.scaler
        if state.step % objective.every:
            continue
        out = learner.runner(x, y)
        loss = out["loss"]
        value, stop = world.agree(loss, stop)  # every rank sees the same loss: all stop together on NaN
        if not math.isfinite(value):
            kept = f"the last good checkpoint is kept in {path}" if path else "no checkpoint was written"
            raise TrainingDiverged(
                f"the {objective.name} loss became {value} at step {state.step + 1} (epoch {state.epoch + 1}); "
                f"training stopped and {kept}. Lower the learning rate (--lr) or check the data."
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if objective.after_step is not None:
            objective.after_step()
        prefix = "" if len(learners) == 1 else f"{objective.name}_"
        values[f"{prefix}loss"] = value
        for k, v in out.items():
            if k != "loss":
                values[f"{prefix}{k}"] = float(v)
    if "loss" not in values:  # several objectives: the first one's loss stands for the step
        values["loss"] = next(v for k, v in values.items() if k.endswith("loss"))
    return values, stop


@torch.no_grad()
def _mean_validation_loss(model, val: Split, config: TrainConfig, device, batch_size: int = 500) -> float:
    """Mean validation loss, with its Monte Carlo noise fixed by the seed: every epoch (and every rank)
    scores with the same draws, so epochs are compared on the model alone."""
    model.eval()
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for i in range(0, len(val), batch_size):
            x = val.x[i : i + batch_size].to(device)
            total += model.validation_loss(x, config.val_importance_samples).sum().item()
    return total / len(val)


RESUME_MAY_CHANGE = {"epochs", "device", "workers"}  # training settings a resume may set anew


def _check_same_run(saved: dict, now: dict, path: Path) -> None:
    """Refuse a resume whose model, data or training settings (all but RESUME_MAY_CHANGE) differ from the
    run's config.json, naming the first that does."""
    if saved.get("sampling_weights") != now.get("sampling_weights"):
        raise GenlabError(
            f"--resume continues the run in '{path}' with the sampling weights it was trained with "
            f"({saved.get('sampling_weights') or 'none'}), but the weights given now are "
            f"{now.get('sampling_weights') or 'none'}; give the same --weights file as before, or train a new run."
        )
    for section in ("family", "model", "data", "train", "data_meta"):
        old, new = json.loads(files.dumps(saved.get(section))), json.loads(files.dumps(now.get(section)))
        if section == "train" and isinstance(old, dict) and isinstance(new, dict):
            old, new = ({k: v for k, v in d.items() if k not in RESUME_MAY_CHANGE} for d in (old, new))
        if old == new:
            continue
        if section == "data_meta":
            raise GenlabError(f"the data of the run in '{path}' has changed since it was trained (shape, classes or "
                              "statistics); train a new run.")
        if not (isinstance(old, dict) and isinstance(new, dict)):
            raise GenlabError(f"--resume continues the run in '{path}' as it was configured, but its {section} "
                              "differs now; train a new run.")
        key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
        flag = "--data" if (section, key) == ("data", "name") else "--" + key.replace("_", "-")
        raise GenlabError(
            f"--resume continues the run in '{path}' as it was configured, but {flag} {json.dumps(new.get(key))} "
            f"(a flag, or from --config or --recipe) differs from its {section} config ({json.dumps(old.get(key))}); "
            "drop it, or train a new run."
        )


def _write_best(path, model, best) -> None:
    if path is None:
        return
    if best is not None:
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best)
        runs.save_model(path / runs.MODEL, model)
        model.load_state_dict(current)
    else:
        runs.save_model(path / runs.MODEL, model)


# ---------------------------------------------------------------------------------------------- checkpoints


def _save_checkpoint(file: Path, model, optimizers, state: _State, best, order, rng: list[torch.Tensor]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best is not None:
        tensors.update({f"best.{k}": v for k, v in best.items()})
    if order is not None:
        tensors["order"] = order
    tensors.update({f"rng.cpu.{rank}": r for rank, r in enumerate(rng)})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    groups, scalars = [], {}
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        groups.append(sd["param_groups"])
        for pid, pstate in sd["state"].items():
            for name, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{i}.{pid}.{name}"] = value
                else:
                    scalars[f"{i}.{pid}.{name}"] = value
    meta = {"state": dataclasses.asdict(state), "param_groups": groups, "optim_scalars": scalars}
    runs.save_tensors(file, tensors, {"kind": "checkpoint", "state": json.dumps(meta)})  # inf: no best epoch yet


def _load_checkpoint(file: Path, model, optimizers, world: World):
    tensors, metadata = runs.read_tensors(file, "checkpoint")
    try:
        meta = json.loads(metadata["state"])
        state = build_config(_State, meta["state"], "checkpoint state", finite=False)
        counters = {k: v for k, v in dataclasses.asdict(state).items() if type(v) is int}
        if any(v < 0 for v in counters.values()):
            raise ValueError(f"negative counters {counters}")
        runs.load_weights(model, _prefixed(tensors, "model."), file)
        best = _prefixed(tensors, "best.") or None
        expected = model.state_dict()
        if not _weights_fit(expected, expected) or (best is not None and not _weights_fit(best, expected)):
            raise ValueError("weights that are not finite, or do not fit the model")
        for i, opt in enumerate(optimizers):
            per_param: dict[int, dict] = {}
            for key, value in _prefixed(tensors, f"optim.{i}.").items():
                pid, name = key.split(".", 1)
                per_param.setdefault(int(pid), {})[name] = value
            for key, value in meta["optim_scalars"].items():
                j, pid, name = key.split(".", 2)
                if int(j) == i:
                    per_param.setdefault(int(pid), {})[name] = value
            params = [p for g in opt.param_groups for p in g["params"]]
            for pid, pstate in per_param.items():  # Adam's state, as a tampered file cannot fake it
                if not 0 <= pid < len(params) or not _adam_state_fits(pstate, params[pid], state.step):
                    raise ValueError(f"optimiser state of parameter {pid}")
            # the hyperparameters (betas, eps, weight decay) are the run's config, not the file's to change
            opt.load_state_dict({"state": per_param, "param_groups": opt.state_dict()["param_groups"]})
        torch.set_rng_state(tensors[f"rng.cpu.{world.rank}"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, RecursionError) as e:
        raise GenlabError(f"the checkpoint '{file}' is incomplete or from another version ({e!r}).") from None
    return state, best, tensors.get("order")


def _weights_fit(weights: dict, expected: dict) -> bool:
    """Whether weights have the model's names, shapes and dtypes, and every float among them is finite."""
    return weights.keys() == expected.keys() and all(
        weights[k].shape == expected[k].shape and weights[k].dtype == expected[k].dtype
        and (not weights[k].is_floating_point() or bool(torch.isfinite(weights[k]).all())) for k in weights)


def _adam_state_fits(state: dict, param: torch.Tensor, steps: int) -> bool:
    """Whether a checkpoint's Adam state for `param` is one Adam could have written after `steps` training
    steps: its two running moments finite and of the parameter's shape and dtype (the second non-negative), its
    step count a whole number from 0 to steps."""
    if set(state) != {"exp_avg", "exp_avg_sq", "step"} or not all(torch.is_tensor(state[k]) for k in ("exp_avg",
                                                                                                      "exp_avg_sq")):
        return False
    m, v, step = state["exp_avg"], state["exp_avg_sq"], torch.as_tensor(state["step"])
    return (m.shape == v.shape == param.shape and m.dtype == v.dtype == param.dtype and step.dim() == 0
            and bool(torch.isfinite(m).all()) and bool(torch.isfinite(v).all()) and bool((v >= 0).all())
            and math.isfinite(float(step)) and float(step) == int(float(step)) and 0 <= float(step) <= steps)


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _tensorboard_writer_class(out):
    """TensorBoard's SummaryWriter, checked before anything is written."""
    if out is None:
        raise GenlabError("TensorBoard logging writes into the run directory; give fit an `out` folder.")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise GenlabError(
            "TensorBoard logging needs the tensorboard package: pip install 'genlab[tensorboard]', "
            "or train without --tensorboard."
        ) from None
    return SummaryWriter


class _MetricsLog:
    """metrics.jsonl, appended line by line (kept in memory too), and TensorBoard when asked for."""

    def __init__(self, path: Path | None, tensorboard=None, rows: list[dict] | None = None):
        self.file = None if path is None else path / runs.METRICS
        self.rows: list[dict] = list(rows or [])  # a resumed run's history starts with the rows it keeps
        self.tensorboard = tensorboard

    def write(self, row: dict) -> None:
        row = files.finite(row)  # strict JSON: a diverged loss is logged as null, not NaN
        self.rows.append(row)
        if self.file is not None:
            files.append_line(self.file, files.dumps(row))
        if self.tensorboard is not None and row.get("kind") in ("step", "epoch"):
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("kind", "step", "epoch"):
                    self.tensorboard.add_scalar(f"{row['kind']}/{key}", value, row["step"])
            self.tensorboard.flush()

    def images(self, model, kind: str, epoch: int) -> None:
        if self.tensorboard is None or kind != "image":
            return
        with evaluating(model), torch.no_grad():
            samples = model.sample(64, generator=torch.Generator().manual_seed(0))
        grid = torch.from_numpy(np.asarray(pictures.image_grid(samples))).permute(2, 0, 1)
        self.tensorboard.add_image("samples", grid, epoch)
