"""The run directory: config.json + model.safetensors (+ checkpoint, metrics, pictures). Never pickle.

  RUN/config.json             family, model/data/train configs, genlab and torch versions
  RUN/model.safetensors       the weights to use (the best by validation loss when there is a validation split)
  RUN/checkpoint.safetensors  weights, optimiser state, RNG state; its JSON metadata holds step, epoch, ...
  RUN/metrics.jsonl           one JSON object per logged step and per epoch
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from genlab import files
from genlab.errors import GenlabError

CONFIG = "config.json"
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
FORMAT = "genlab"


def genlab_version() -> str:
    """The installed package's version, from its metadata (no import of the package root)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genlab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass
class Run:
    """A trained model with the configs that rebuild it, and where it lives."""

    model: torch.nn.Module
    config: dict  # {"family", "model", "data", "train", versions}
    path: Path | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.config["family"]

    def load_data(self, source=None, **overrides):
        """The dataset this run was trained on, rebuilt from its saved spec; or `source` (a name or path) read
        the same way: the run's options, and tables standardised with the run's training statistics (not
        their own), so that new data is in the units the model learned."""
        from genlab.data import load_dataset

        spec = dict(self.config.get("data") or {})
        name = spec.pop("name", None)
        if source is None:
            if name is None:
                raise GenlabError("this run was trained on in-memory data without a saved spec; pass the data "
                                  "explicitly.")
            data = load_dataset(name, **{**spec, **overrides})
            if tuple(data.meta.shape) != tuple(self.config["model"].get("input_shape") or ()):
                raise GenlabError(f"the run models examples of shape {tuple(self.config['model']['input_shape'])}, "
                                  f"but its data ({name}) has {tuple(data.meta.shape)}: its config.json was changed.")
            return data
        meta = self.config.get("data_meta") or {}
        loc, std = meta.get("loc"), meta.get("std")
        if loc is None:
            return load_dataset(source, **{**spec, **overrides})
        data = load_dataset(source, **{**spec, **overrides, "standardize": False})
        if tuple(data.meta.shape) != (len(loc),):
            raise GenlabError(f"the run models {len(loc)} features; '{source}' has examples of shape "
                              f"{tuple(data.meta.shape)}.")
        loc, std = torch.tensor(loc), torch.tensor(std)
        for split in (data.train, data.test):
            split.x = (split.x - loc) / std
        data.meta = dataclasses.replace(data.meta, loc=meta["loc"], std=meta["std"])
        return data


# ---------------------------------------------------------------------------------------------- files


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        try:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, **metadata})
        except SafetensorError as e:  # a full disk reaches us as safetensors' own error, not an OSError
            raise GenlabError(f"cannot write '{path}' ({e}); free some disk space and try again.") from None

    files.write_atomic(path, write)


def read_tensors(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata from a genlab safetensors file; any other file gives GenlabError, and no code runs."""
    return _read_safetensors(path, kind, lambda f: {k: f.get_tensor(k) for k in f.keys()})


def read_tensor_names(path: Path, kind: str) -> tuple[list[str], dict[str, str]]:
    """The tensor names and metadata of a genlab safetensors file, without reading the tensors."""
    return _read_safetensors(path, kind, lambda f: list(f.keys()))


def _read_safetensors(path: Path, kind: str, read):
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"'{path}' does not exist.")
    with open(path, "rb") as f:
        head = f.read(9)  # safetensors: an 8-byte little-endian header length, then the JSON header
    if head[8:9] != b"{" and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise GenlabError(
            f"'{path}' is a pickle or torch.save archive, not safetensors; genlab never unpickles files. "
            "Re-create the run with genlab."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            contents = read(f)
    except Exception as e:  # safetensors reports damage with its own exception types
        raise GenlabError(f"'{path}' is damaged or not a safetensors file ({e}); re-create it.") from None
    if metadata.get("format") != FORMAT or metadata.get("kind") != kind:
        raise GenlabError(f"'{path}' is a safetensors file but not a genlab {kind}; it was written by something else.")
    return contents, metadata


def save_model(path: Path, model: torch.nn.Module) -> None:
    save_tensors(path, model.state_dict(), {"kind": "model", "family": model.family})


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or wrong:
        detail = "; ".join(
            s
            for s in (
                missing and f"missing {', '.join(missing[:3])}",
                extra and f"unexpected {', '.join(extra[:3])}",
                wrong and f"wrong shape for {', '.join(wrong[:3])}",
            )
            if s
        )
        raise GenlabError(f"the weights in '{source}' do not fit the model its config describes ({detail}).")
    model.load_state_dict(tensors)


# ---------------------------------------------------------------------------------------------- runs


# what genlab writes into a run folder under fixed names; `--force` deletes these and nothing else
RUN_FILES = (CONFIG, MODEL, CHECKPOINT, METRICS, "samples.png", "reconstructions.png", "traverse.png",
             "interpolate.png", "latent.png", "report.html", "evaluation.json", "audit.json", "audit_top.png",
             "audit_bottom.png", "audit_histograms.png", "audit_ess.png")
RUN_FOLDERS = {"epochs": "epoch_*.png", "tensorboard": "events.out.tfevents.*",  # folder: the files genlab puts there
               "samples": "seed*_n*.png"}
LOCK = ".genlab.lock"


def check_run_dir(path: Path, *, resume: bool, force: bool) -> None:
    """Raise GenlabError when training into `path` must be refused; changes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GenlabError(f"'{path}' exists and is not a folder; choose another --out.")
    if resume:
        if not (path / CHECKPOINT).is_file():
            raise GenlabError(f"nothing to resume in '{path}': it has no {CHECKPOINT}. Train without --resume.")
        return
    if not path.exists() or not any(p.name != LOCK for p in path.iterdir()):
        return
    if not force:
        raise GenlabError(
            f"'{path}' already holds files; use --resume to continue that run, --force to replace it, "
            "or another --out."
        )
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents, Path.home().resolve()):
        raise GenlabError(f"--force never replaces '{path}': it is the working folder, one of its parents or the "
                          "home folder. Give the run its own --out folder.")
    try:
        read_config(path)
    except GenlabError:
        raise GenlabError(f"'{path}' is not a genlab run (no valid {CONFIG}); --force only replaces runs, "
                          "so nothing was deleted. Choose another --out.") from None


def clear_run_dir(path: Path) -> None:
    """Delete what genlab wrote into a run folder (after `check_run_dir` agreed to --force); a user's own
    files stay. A link in genlab's place is removed itself, never followed."""
    path = Path(path)
    for name in RUN_FILES:
        if (path / name).is_file() or (path / name).is_symlink():
            (path / name).unlink()
    for name, pattern in RUN_FOLDERS.items():
        folder = path / name
        if folder.is_symlink():
            folder.unlink()
        elif folder.is_dir():
            for f in folder.glob(pattern):
                if f.is_file() or f.is_symlink():
                    f.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()


def run_subfolder(path: Path, name: str) -> Path:
    """RUN/name as a real folder: a link planted in its place is replaced, so writes stay inside the run."""
    folder = Path(path) / name
    if folder.is_symlink():
        folder.unlink()
    folder.mkdir(exist_ok=True)
    return folder


class RunLock:
    """An exclusive lock on a run folder (RUN/.genlab.lock) while a training writes it: a second training
    into the same --out is refused instead of mixing two runs' files. Released when the process ends, even by
    kill -9 (an OS file lock, not a pid file)."""

    def __init__(self, path: Path):
        self.path, self.fd = Path(path), None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; training still works, unguarded
            return self
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise GenlabError(f"another genlab process is training into '{self.path}'; wait for it to end or "
                              "choose another --out.") from None
        self.fd = fd
        return self

    def check(self) -> None:
        """Raise GenlabError when another process holds the lock; changes nothing."""
        if (self.path / LOCK).is_file():
            self.acquire().release()

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None


def read_config(path: Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise GenlabError(f"the run '{path}' does not exist (expected a folder written by 'genlab train').")
    if not (path / CONFIG).is_file():
        raise GenlabError(f"'{path}' is not a genlab run: it has no {CONFIG}.")
    try:
        config = json.loads((path / CONFIG).read_text())
    except (ValueError, RecursionError) as e:  # bad JSON, bad bytes, an integer of 5,000 digits, deep nesting
        raise GenlabError(f"'{path / CONFIG}' is not valid JSON ({type(e).__name__}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("family"), str) \
            or not isinstance(config.get("model"), dict):
        raise GenlabError(f"'{path / CONFIG}' is not a genlab run config (no family/model).")
    for section, may_be_null in (("data", True), ("data_meta", False), ("train", False)):  # data: null in memory
        if not (isinstance(config.get(section), dict) or (may_be_null and section in config
                                                             and config[section] is None)):
            raise GenlabError(f"'{path / CONFIG}' is damaged: its {section} section is missing or not a JSON object.")
    return config


def save(model: torch.nn.Module, path: str | os.PathLike, data_meta=None) -> Path:
    """A trained model as a run folder (config.json + model.safetensors) that every genlab tool and `load` read:
    a notebook model goes to the command line and back. `data_meta`: the DatasetMeta it was trained on, when
    known (the tools then show pictures in the data's units). Refuses a folder that holds another run."""
    import dataclasses

    path = Path(path)
    if (path / CONFIG).exists() or (path / CHECKPOINT).exists():
        raise GenlabError(f"'{path}' already holds a run; save the model to a new folder.")
    path.mkdir(parents=True, exist_ok=True)
    meta = dataclasses.asdict(data_meta) if data_meta is not None else {}
    files.write_json(path / CONFIG, {"genlab_version": genlab_version(), "torch_version": torch.__version__,
                                     "family": model.family, "model": model.config.to_dict(), "data": None,
                                     "data_meta": meta, "train": {}, "sampling_weights": None})
    save_model(path / MODEL, model)
    return path


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of a run folder (written by `fit` with `out`, `genlab train` or `save`), in eval mode."""
    return load_run(path, device).model


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    """The trained model of a run directory, in eval mode, with its config."""
    from genlab.models import build_model

    path = Path(path)
    config = read_config(path)
    model = build_model(config["family"], config["model"])
    weights = path / MODEL
    if not weights.is_file():
        try:
            RunLock(path).check()
        except GenlabError:
            raise GenlabError(f"the run '{path}' is still training (another genlab process holds it); its "
                              f"{MODEL} is written when that training ends.") from None
        if (path / CHECKPOINT).is_file():
            raise GenlabError(f"the run '{path}' has no {MODEL}: its training did not finish. Continue it with "
                              f"'genlab train {config['family']} --out {path} --resume'.")
        raise GenlabError(f"the run '{path}' has no {MODEL} yet: its training has not finished an epoch.")
    tensors, _ = read_tensors(weights, "model")
    load_weights(model, tensors, weights)
    model.to(device).eval()
    return Run(model, config, path, read_metrics(path))


def read_metrics(path: Path) -> list[dict]:
    file = Path(path) / METRICS
    if not file.is_file():
        return []
    rows = []
    for line in file.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a line cut by a kill, or one genlab did not write
        if isinstance(row, dict) and all(isinstance(v, (str, int, float, bool, type(None))) for v in row.values()):
            rows.append(row)  # the rows genlab writes hold numbers, names and nulls only
    return rows
