"""The `genlab` command: parses, calls the library, prints. User mistakes: one `error:` line, exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

from genlab import files
from genlab.errors import GenlabError, TrainingInterrupted, article
from genlab.models import FAMILIES, base
from genlab.models.base import CONDITIONAL, ENCODES, POSTERIOR, REWEIGHTS, can

MAX_SAMPLE_VALUES = 2**28  # 1 GiB of float32
MAX_GRID_CELLS = 10_000
MAX_STEPS = 1000  # pictures per row of a traversal or interpolation
MAX_IMPORTANCE_SAMPLES = 100_000  # K of the IWAE bound: time grows with K

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (and exit 2) like every other user mistake."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})  # --beta is not short for --beta1

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genlab", description="Deep generative modeling: train, sample, evaluate.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("datasets", help="list the built-in datasets")
    d.add_argument("--json", action="store_true", help="print one JSON object")

    t = sub.add_parser("train", help="train a model and write a run directory (genlab train FAMILY --help)")
    families = t.add_subparsers(dest="family", required=True, metavar="FAMILY",
                                help=", ".join(FAMILIES) + "; each has its own options")
    for family, (model_cls, config_cls) in FAMILIES.items():
        _add_train_parser(families, family, model_cls, config_cls)

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("--out", help="FILE.png (a grid) or FILE.npy (raw arrays); default RUN/samples/seedS_nN.png, "
                   "never the run's own pictures")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--class", type=int, dest="label", help="the class to generate (conditional GAN)")

    c = sub.add_parser("reconstruct", help="inputs next to their reconstructions")
    c.add_argument("run")
    c.add_argument("-n", type=_count(MAX_GRID_CELLS), default=32, help="number of inputs")
    c.add_argument("--split", default="test", choices=["train", "test"])
    c.add_argument("--out", help="FILE.png; default RUN/reconstructions.png")

    e = sub.add_parser("evaluate", help="likelihood metrics of a run on a split")
    e.add_argument("run")
    e.add_argument("--split", default="test", choices=["train", "test", "all"])
    e.add_argument("--data", help="built-in name or path (default: the run's own data); read with the run's options")
    e.add_argument("--importance-samples", type=_count(MAX_IMPORTANCE_SAMPLES), default=1000,
                   help="K of the IWAE bound on log p(x)")
    e.add_argument("--batch-size", type=_count(MAX_SAMPLE_VALUES), default=100)
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--disentanglement", action="store_true",
                   help="add MIG and DCI (data with known factors, such as 'shapes')")
    e.add_argument("--quality", action="store_true",
                   help="add sample-quality metrics (always on for a GAN): fd, fd_floor, precision, recall, ...")

    v = sub.add_parser("traverse", help="decode while one latent dimension at a time sweeps a range")
    v.add_argument("run")
    v.add_argument("--dims", type=int, nargs="+", help="dimensions to sweep (default: --top 8)")
    v.add_argument("--top", type=int, default=8, help="sweep the K dimensions with the most KL")
    v.add_argument("--range", type=_number, default=3.0, dest="span",
                   help="sweep -R..R prior standard deviations (R up to 100)")
    v.add_argument("--steps", type=_count(MAX_STEPS), default=9)
    v.add_argument("--index", type=int, help="start from the code of this test input (default: the prior mean)")
    v.add_argument("--out", help="FILE.png; default RUN/traverse.png")

    i = sub.add_parser("interpolate", help="decode the path between the codes of two test inputs")
    i.add_argument("run")
    i.add_argument("--from", type=int, default=0, dest="start", help="test input index")
    i.add_argument("--to", type=int, default=1, dest="end", help="test input index")
    i.add_argument("--steps", type=_count(MAX_STEPS), default=10)
    i.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    i.add_argument("--out", help="FILE.png; default RUN/interpolate.png")

    a = sub.add_parser("latent", help="2-D map of the test codes coloured by label")
    a.add_argument("run")
    a.add_argument("--method", choices=["pca", "tsne"], default="pca")
    a.add_argument("--split", default="test", choices=["train", "test"])
    a.add_argument("--out", help="FILE.png; default RUN/latent.png")

    t = sub.add_parser("detect", help="score inputs by how well a trained AE/VAE explains them; flag outliers")
    t.add_argument("run")
    t.add_argument("--data", help="built-in name or path (default: the run's own data); read with the run's options")
    t.add_argument("--split", default="all", choices=["train", "test", "all"], help="which inputs to score")
    t.add_argument("--score", default="auto", help="auto, recon, elbo, iwae, latent_density, likelihood_ratio, "
                   "complexity or typicality")
    t.add_argument("--contamination", type=_number, default=0.05, help="share of the training split taken as outliers")
    t.add_argument("--outlier-label", type=int,
                   help="the label that marks outliers, for AUROC/AUPRC (default: a class named outlier/anomaly)")
    t.add_argument("--out", help="scores.csv: index, score, flag (1 = outlier), weight (for train --weights)")
    t.add_argument("--top", type=int, default=32, help="how many of the most outlying inputs --out-grid shows")
    t.add_argument("--out-grid", help="FILE.png: the most outlying inputs (images)")
    t.add_argument("--out-hist", help="FILE.png: histogram of the scores (inliers against outliers when known)")
    t.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    t.add_argument("--no-progress", action="store_true")

    u = sub.add_parser("audit", help="what a DB-VAE's weights uncovered: rare examples, groups, accuracy")
    u.add_argument("run")
    u.add_argument("--top", type=int, default=32, help="examples in each of the highest/lowest weight grids")
    u.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    u.add_argument("--data", help="built-in name or path (default: the run's own data); read with the run's options")

    o = sub.add_parser("report", help="write RUN/report.html: metrics, curves, samples, traversals, latent map")
    o.add_argument("run")
    o.add_argument("--importance-samples", type=_count(MAX_IMPORTANCE_SAMPLES), default=100)
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("--data", help="built-in name or path (default: the run's own data); read with the run's options")
    return p


FROM_DATA = {"input_shape", "num_classes", "name"}  # config fields the data sets (--data names it)


def _add_train_parser(families, family: str, model_cls, config_cls) -> None:
    """`genlab train FAMILY`: the run's options, then one flag per field of the family's config, the data spec
    and the training config, with the help written beside the field and the family's defaults."""
    from genlab.data.core import DataSpec
    from genlab.train import TrainConfig

    summary = " ".join((sys.modules[model_cls.__module__].__doc__ or family).strip().split("\n\n")[0].split())
    f = families.add_parser(family, help=summary, description=summary)
    f.add_argument("--data", help="built-in dataset name or a file/folder path")
    f.add_argument("--out", help="run directory (default runs/FAMILY_DATA)")
    f.add_argument("--config", help="JSON file with 'model', 'data' and 'train' sections; flags override it")
    f.add_argument("--recipe", help="a named preset (see 'genlab datasets'); the config file and flags override it")
    f.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    f.add_argument("--force", action="store_true", help="replace an existing run in --out")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--weights", help="per-example sampling weights: a CSV with index and weight (or score) "
                   "columns, as 'genlab detect --out' writes; rare examples are drawn more often")
    f.add_argument("--nproc", type=int, help="train in N processes (torchrun + DistributedDataParallel)")
    train_defaults = {**TrainConfig().to_dict(), **getattr(model_cls, "train_defaults", {})}
    for title, cls, defaults in ((f"{family} model", config_cls, {}), ("data", DataSpec, {}),
                                 ("training", TrainConfig, train_defaults)):
        _add_config_flags(f.add_argument_group(title), cls, defaults)


def _add_config_flags(group, cls, defaults: dict) -> None:
    """A flag for each field of a config dataclass (but those the data sets): its type, choices and help from
    the dataclass, default None so that only what is given overrides the config file and recipe."""
    import typing

    from genlab.configs import field_help

    hints, helps = typing.get_type_hints(cls), field_help(cls)
    for field in dataclasses.fields(cls):
        if field.name in FROM_DATA:
            continue
        default = defaults.get(field.name, field.default)
        shown = "" if default is dataclasses.MISSING else f" (default: {_as_flag(default)})"
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, default=None,
                           help=(helps.get(field.name, "") + shown).strip().replace("%", "%%"),
                           **_flag_type(hints[field.name]))


def _as_flag(value) -> str:
    """A config value as one would type it on the command line."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "none"
    return str(value)


def _flag_type(tp) -> dict:
    """argparse keywords for a config field's type: choices, a number, a switch or a list."""
    import types
    import typing

    from genlab.configs import choices

    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # optional: the flag gives the value
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if choices(tp) is not None:
        return {"choices": choices(tp)}
    if tp is bool:  # --flag alone switches it on
        return {"type": _bool, "nargs": "?", "const": True, "metavar": "{true,false}"}
    if tp is float:
        return {"type": _number}
    if tp is int:
        return {"type": int}
    if typing.get_origin(tp) is tuple:
        return {"type": _flag_type(typing.get_args(tp)[0])["type"], "nargs": "+"}
    return {"type": str}


def _config_flags(cls) -> list[str]:
    """The flags (as argparse dests) that set fields of a config dataclass."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in FROM_DATA]


def _unknown_flags(args, unknown: list[str]) -> str:
    """The usage mistake for flags a command does not take; for a training, which family they belong to."""
    flag = next((u for u in unknown if u.startswith("--")), unknown[0])
    if args.command == "train":
        dest = flag.split("=")[0].removeprefix("--").replace("-", "_")
        owners = [name for name, (_, config_cls) in FAMILIES.items() if dest in _config_flags(config_cls)]
        if owners:
            return (f"{flag.split('=')[0]} does not apply to the {args.family} family (it sets "
                    f"{article(' or '.join(owners))}); see 'genlab train {args.family} --help'")
    return f"unrecognized arguments: {' '.join(unknown)} (see 'genlab {args.command} --help')"


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out




def _number(text: str) -> float:
    """A float flag: a finite number (argparse's float takes 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not '{text}'")
    return value


def _count(upper: int):
    """An integer flag that sizes work or memory: from 1 to `upper`."""
    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not '{text}'") from None
        if not 1 <= value <= upper:
            raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {upper}, not {value}")
        return value

    return count


def _seed(text: str) -> int:
    """A seed as every random generator genlab uses accepts it: an integer in [0, 2^32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, not '{text}'") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"a seed is an integer from 0 to {2**32 - 1}, not {value}")
    return value


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not '{text}'")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            parser.exit(2, f"error: {_unknown_flags(args, unknown)}\n")
    except SystemExit as e:  # --help, or a usage mistake already printed as one line
        return e.code if isinstance(e.code, int) else 2
    try:
        if getattr(args, "nproc", None) is not None:
            from genlab.distributed import launch

            most = max(os.cpu_count() or 1, _gpus())
            if not 1 <= args.nproc <= most:
                raise GenlabError(f"--nproc must be from 1 to {most} (this machine's CPU cores or GPUs), not "
                                  f"{args.nproc}.")
            if args.nproc > 1:
                _training_plan(args).check()  # a mistake is one line here, not one per process and a traceback
                return launch(args.nproc, _without_option(argv, "--nproc"))
        return COMMANDS[args.command](args) or 0
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except GenlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `genlab datasets | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a folder that cannot be written, a full disk: the user's to fix, not a bug
        where = f" '{e.filename}'" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; check the path and its permissions.", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if "allocate" not in str(e):  # a bug, not a size the user asked for
            raise
        print("error: out of memory; ask for fewer samples or a smaller model (--latent-dim, --hidden, -n).",
              file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; ask for fewer samples or a smaller model (--latent-dim, --hidden, -n).",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------------- commands


def cmd_datasets(args) -> None:
    from genlab.data import list_datasets

    names = list_datasets()
    if args.json:
        print(json.dumps(names))
        return
    width = max(map(len, names))
    for name, description in names.items():
        print(f"{name:<{width}}  {description}")
    print("\nOr a path: a folder of images (class subfolders = labels), IDX files (MNIST/Fashion-MNIST), "
          "CIFAR-10 binary batches, CSV, NPY or NPZ.")
    from genlab.recipes import RECIPES

    print("\nRecipes (genlab train FAMILY --recipe NAME):")
    for name, r in RECIPES.items():
        print(f"  {name} ({r['family']}): {r['about']}")


def cmd_train(args) -> None:
    plan = _training_plan(args)
    if int(os.environ.get("RANK", "0")) == 0 and not args.no_progress:  # with the progress bar, on stderr
        plan.check()  # a mistake stays the one line it is, not a second line after this one
        print(f"data {plan.data.describe()}", file=sys.stderr)  # what the loader made of the files
    run = plan.fit(progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 speaks for the run
    end = run.history[-1] if run.history else {}
    kept = end.get("kept_epoch")
    val = end.get("best_val_loss_nats")
    extra = f", validation loss {val:.2f} nats" if val is not None else ""
    print(f"trained {args.family} on {plan.data.meta.name}: kept epoch {kept} of {end.get('epochs')}{extra}")
    pictures = "samples.png" + (", reconstructions.png" if can(run.model, ENCODES) else "")
    print(f"run written to {plan.out}/ (config.json, model.safetensors, {pictures}, epochs/)")


@dataclasses.dataclass
class _TrainingPlan:
    """What `genlab train` will do, built and checked before anything runs or is written."""

    family: str
    model: object
    data: object
    config: object
    out: Path
    weights: object  # a tensor from --weights, or None
    resume: bool
    force: bool
    processes: int  # --nproc

    def fit(self, progress: bool):
        if can(self.model, REWEIGHTS):
            from genlab.debias import fit_debiased

            return fit_debiased(self.model, self.data, self.config, self.out, resume=self.resume, force=self.force,
                                progress=progress)
        from genlab.train import fit

        return fit(self.model, self.data, self.config, self.out, resume=self.resume, force=self.force,
                   weights=self.weights, progress=progress)

    def check(self) -> None:
        """Every check the start of `fit` makes (for --nproc: before the processes are launched)."""
        from genlab import runs
        from genlab.train import check_start

        runs.RunLock(self.out).check()  # the processes would each find the lock taken
        if can(self.model, REWEIGHTS) and self.model.config.reweight == "jtt":  # weights from a first model
            runs.check_run_dir(self.out, resume=self.resume, force=self.force)
            return
        check_start(self.model, self.data, self.config, self.out, resume=self.resume, force=self.force,
                    weights=self.weights, processes=self.processes)


def _training_plan(args) -> _TrainingPlan:
    import torch

    from genlab.configs import build_config
    from genlab.data import load_dataset
    from genlab.data.core import DataSpec
    from genlab.recipes import recipe
    from genlab.runs import check_run_dir, read_config
    from genlab.train import TrainConfig

    preset = recipe(args.recipe, args.family) if args.recipe else {}
    file_config = _read_config_file(args.config) if args.config else {}
    file_config = {k: {**preset.get(k, {}), **file_config.get(k, {})} for k in ("model", "data", "train")}
    flags = vars(args)
    given = lambda names: {k: flags[k] for k in names if flags.get(k) is not None}  # noqa: E731
    model_cls, config_cls = FAMILIES[args.family]
    model_given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given(_config_flags(config_cls)).items()}
    data_given, train_given = given(_config_flags(DataSpec)), given(_config_flags(TrainConfig))
    own_rates = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(config_cls) if f.name.startswith("lr_")]
    if own_rates and args.lr is not None:
        raise GenlabError(f"{article(args.family)} has its own learning rates: give {' and '.join(own_rates)} "
                          "instead of --lr.")

    if args.resume:
        if not args.out:
            raise GenlabError("--resume needs --out, the run directory to continue.")
        check_run_dir(Path(args.out), resume=True, force=False)  # refuses a folder with nothing to resume
        saved = read_config(Path(args.out))
        if saved["family"] != args.family:
            raise GenlabError(f"the run in '{args.out}' is {article(saved['family'])}, not "
                              f"{article(args.family)}.")
        spec = dict(saved["data"] or {})
        name = spec.pop("name", None)
        if name is None:
            raise GenlabError(f"the run in '{args.out}' was trained on in-memory data; resume it in Python with fit.")
        # the saved configs, then the config file, the recipe and the flags: fit holds the result to the saved
        # run (train.check_start), so a changed option is refused there, once for the CLI and the library
        file_data = {k: v for k, v in file_config["data"].items() if k != "name"}
        data = load_dataset(args.data or file_config["data"].get("name") or name, **{**spec, **file_data,
                                                                                    **data_given})
        model_config = {**saved["model"], **file_config["model"], **model_given}
        train_config = {**saved["train"], **file_config["train"], **train_given}
    else:
        data_name = args.data or file_config.get("data", {}).get("name")
        if not data_name:
            raise GenlabError("--data is needed: a built-in name (see 'genlab datasets') or a file/folder path.")
        data_options = {k: v for k, v in file_config.get("data", {}).items() if k != "name"}
        data = load_dataset(data_name, **{**data_options, **data_given})
        defaults = config_cls.for_data(data.meta).to_dict()
        model_config = {**defaults, **file_config.get("model", {}), **model_given}
        model_config["input_shape"] = list(data.meta.shape)
        train_config = {**getattr(model_cls, "train_defaults", {}), **file_config.get("train", {}), **train_given}

    config = TrainConfig.from_dict(train_config)
    torch.manual_seed(config.seed)  # the initial weights follow the seed too
    model = model_cls(build_config(config_cls, model_config, args.family))
    if args.weights and can(model, REWEIGHTS):
        raise GenlabError(f"{article(args.family)} makes its own sampling weights (--reweight); --weights does not "
                          "apply.")
    out = Path(args.out or f"runs/{args.family}_{Path(data.meta.name).stem}")
    weights = None
    if args.weights:
        from genlab.outliers import read_weights_csv

        weights = read_weights_csv(args.weights)
    return _TrainingPlan(args.family, model, data, config, out, weights, args.resume, args.force, args.nproc or 1)


def _dataset_name(name: str) -> str:
    """A --data value as a run's config.json records it: a built-in name, or the file's absolute path."""
    from genlab.data import list_datasets

    return name if name in list_datasets() or not Path(name).exists() else str(Path(name).resolve())


def _read_config_file(path: str) -> dict:
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GenlabError(f"the config file '{path}' does not exist.") from None
    except (OSError, ValueError, RecursionError) as e:
        raise GenlabError(f"cannot read the config file '{path}' as JSON ({type(e).__name__}).") from None
    if isinstance(config, dict) and "family" in config:  # a run's own config.json: its three sections
        config = {k: v for k, v in config.items() if k in ("model", "data", "train") and v is not None}
        config.get("model", {}).pop("input_shape", None)  # the data gives it
    if not isinstance(config, dict) or set(config) - {"model", "data", "train"} \
            or not all(isinstance(section, dict) for section in config.values()):
        unknown = sorted(set(config) - {"model", "data", "train"}) if isinstance(config, dict) else []
        raise GenlabError(f"the config file '{path}' must be a JSON object with sections model, data and train"
                          + (f"; it has {', '.join(unknown)}." if unknown else "."))
    return config


def cmd_sample(args) -> None:
    import numpy as np
    import torch

    from genlab import pictures
    from genlab.runs import load_run

    if args.n < 1:
        raise GenlabError(f"-n must be a positive number of samples, not {args.n}.")
    run = load_run(args.run)
    out = Path(args.out) if args.out else run.path / "samples" / f"seed{args.seed}_n{args.n}.png"  # never a run file
    if out.suffix.lower() not in (".png", ".npy"):
        raise GenlabError(f"--out must end in .png (an image grid) or .npy (raw arrays), not '{out.name}'.")
    values = args.n * int(np.prod(run.config["model"]["input_shape"]))
    if values > MAX_SAMPLE_VALUES or (out.suffix.lower() == ".png" and args.n > MAX_GRID_CELLS):
        raise GenlabError(f"-n {args.n} asks for too much: at most {MAX_GRID_CELLS} samples in a picture and "
                          f"{MAX_SAMPLE_VALUES:,} values in an array; draw fewer (several calls with other --seed).")
    generator = torch.Generator().manual_seed(args.seed)
    if args.label is not None:
        if not can(run.model, CONDITIONAL):
            raise GenlabError(f"--class needs a class-conditional model; '{args.run}' is {article(run.family)} without "
                              "classes.")
        samples = run.model.sample(args.n, generator=generator, labels=args.label).cpu()
    else:
        samples = run.model.sample(args.n, generator=generator).cpu()
    meta = run.config.get("data_meta") or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        from genlab.data.core import to_data_units

        array = to_data_units(samples, meta)  # in the data's own units
        fits = np.abs(array).max(initial=0) <= np.finfo(np.float32).max
        files.save_array(array.astype(np.float32) if fits else array, out)  # float64 for values past float32
    else:
        pictures.save_samples_picture(samples, meta.get("kind", "image"), out)
    print(f"{args.n} samples written to {out}")


def cmd_reconstruct(args) -> None:
    from genlab import pictures

    run = _encoder_run(args)
    out = Path(args.out) if args.out else run.path / "reconstructions.png"
    if out.suffix.lower() != ".png":
        raise GenlabError(f"--out must end in .png, not '{out.name}'.")
    data = run.load_data()
    inputs = data.split(args.split).x[: max(1, args.n)]
    recon = run.model.reconstruct(inputs).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures.save_reconstructions_picture(inputs, recon, data.meta.kind, out)
    print(f"{len(inputs)} inputs and their reconstructions written to {out}")


def cmd_evaluate(args) -> None:
    from genlab.metrics.likelihood import UNITS, evaluate, measurable
    from genlab.runs import load_run

    run = load_run(args.run)
    data = run.load_data(args.data)
    split = data.split(args.split)
    result = {}
    if measurable(run.model):  # a density or reconstructions; a GAN has neither
        result = evaluate(run.model, split.x, kind=data.meta.kind, importance_samples=args.importance_samples,
                          batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    if args.quality or not measurable(run.model):  # a model that only generates is judged by its samples
        from genlab.metrics.quality import quality

        result.update(quality(run.model, data, seed=args.seed, progress=not args.no_progress))
    if args.disentanglement:
        if not can(run.model, ENCODES):
            raise GenlabError(f"--disentanglement scores an encoder's codes; the {run.family} has no encoder.")
        from genlab.metrics.disentanglement import disentanglement

        result.update(disentanglement(run.model, data))
    result = {"run": str(run.path), "family": run.family, "split": args.split, **result}
    if args.json:
        print(files.dumps(result))
        return
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:<20} {shown} {UNITS.get(key, '')}".rstrip())


def _png_out(out: str | None, default: Path) -> Path:
    path = Path(out) if out else default
    if path.suffix.lower() != ".png":
        raise GenlabError(f"--out must end in .png, not '{path.name}'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _encoder_run(args):
    from genlab.runs import load_run

    run = load_run(args.run)
    if not can(run.model, ENCODES):
        raise GenlabError(f"'{args.command}' needs an encoder; the {run.family} in '{args.run}' has none "
                          "(sample and evaluate work on every run).")
    return run


def _image_run(args):
    run = _encoder_run(args)
    if (run.config.get("data_meta") or {}).get("kind") != "image":
        raise GenlabError(f"'{args.command}' draws images; the run '{args.run}' models points or tabular data.")
    return run


def _test_input(data, index: int, split: str = "test"):
    x = data.split(split).x
    if not 0 <= index < len(x):
        raise GenlabError(
            f"input index {index} is out of range: the {split} split has {len(x)} examples (0..{len(x) - 1})."
        )
    return x[index : index + 1]


def cmd_traverse(args) -> None:
    import torch

    from genlab import latent, pictures

    run = _image_run(args)
    out = _png_out(args.out, run.path / "traverse.png")
    data = run.load_data()
    model = run.model
    if args.index is not None:
        base = latent.encode(model, _test_input(data, args.index))[0]
    elif can(model, POSTERIOR):
        base = torch.zeros(model.config.latent_dim)  # the prior mean
    else:
        base = latent.encode(model, data.test.x).mean(0)
    if args.top < 1:
        raise GenlabError(f"--top must be a positive number of dimensions, not {args.top}.")
    dims = args.dims if args.dims else latent.top_dimensions(model, data.test.x, min(args.top, model.config.latent_dim))
    images = latent.traverse(model, base, dims, args.span, args.steps)
    pictures.save_image_grid(images, out, ncol=args.steps)
    print(f"traversal of dimensions {dims} written to {out} (one row per dimension, {args.steps} steps)")


def cmd_interpolate(args) -> None:
    import torch

    from genlab import latent, pictures

    run = _image_run(args)
    out = _png_out(args.out, run.path / "interpolate.png")
    data = run.load_data()
    codes = latent.encode(run.model, torch.cat([_test_input(data, args.start), _test_input(data, args.end)]))
    images = latent.interpolate(run.model, codes[0], codes[1], args.steps, spherical=args.slerp)
    pictures.save_image_grid(images, out, ncol=args.steps)
    print(f"interpolation from test input {args.start} to {args.end} written to {out}")


def cmd_latent(args) -> None:
    from genlab import latent, pictures

    run = _encoder_run(args)
    out = _png_out(args.out, run.path / "latent.png")
    data = run.load_data()
    split = data.split(args.split)
    codes = latent.encode(run.model, split.x)
    coords = latent.map_2d(codes, args.method)
    title = f"{args.split} codes ({args.method.upper() if codes.shape[1] > 2 else 'as they are'})"
    pictures.save_latent_map(coords, split.y, out, data.meta.classes, title)
    print(f"latent map of {len(codes)} {args.split} codes written to {out}")


OUTLIER_CLASS_NAMES = ("outlier", "outliers", "anomaly", "anomalies", "ood", "abnormal")


def cmd_detect(args) -> None:
    import numpy as np
    import torch

    from genlab import pictures, report
    from genlab.outliers import OutlierDetector, write_scores_csv
    from genlab.runs import load_run

    for name in ("out_grid", "out_hist"):
        value = getattr(args, name)
        if value and Path(value).suffix.lower() != ".png":
            raise GenlabError(f"--{name.replace('_', '-')} must end in .png, not '{Path(value).name}'.")
    if args.out and Path(args.out).suffix.lower() != ".csv":
        raise GenlabError(f"--out must end in .csv, not '{Path(args.out).name}'.")
    if args.top < 1:
        raise GenlabError(f"--top must be a positive number of inputs, not {args.top}.")
    run = load_run(args.run)
    trained_on = run.load_data()
    detector = OutlierDetector.from_run(run, score=args.score, contamination=args.contamination,
                                        progress=not args.no_progress, data=trained_on)
    data = run.load_data(args.data) if args.data else trained_on
    if args.data and not args.no_progress:
        print(f"data {data.describe()}", file=sys.stderr)
    chosen = data.split(args.split)
    x = torch.as_tensor(chosen.x[:])
    labels = None if chosen.y is None else chosen.y.numpy()
    scores = detector.score_samples(x)
    flags = scores < detector.threshold_
    result = {"run": str(run.path), "data": data.meta.name, "split": args.split, "score": detector.score_,
              "n": len(scores), "n_flagged": int(flags.sum()), "threshold": detector.threshold_,
              "contamination": args.contamination}
    outlier = _outlier_mask(labels, data.meta.classes, args.outlier_label)
    if outlier is not None:
        if outlier.all() or not outlier.any():
            raise GenlabError("AUROC needs both inliers and outliers among the inputs; check --outlier-label.")
        from sklearn.metrics import average_precision_score, roc_auc_score

        result.update(auroc=float(roc_auc_score(outlier, -scores)),
                      auprc=float(average_precision_score(outlier, -scores)), n_outliers=int(outlier.sum()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        result["scores_csv"] = str(write_scores_csv(args.out, scores, flags))
    if args.out_grid:
        if data.meta.kind != "image":
            raise GenlabError("--out-grid draws images; this data is tabular (see --out for the scores).")
        rarest = np.argsort(scores)[: args.top]
        Path(args.out_grid).parent.mkdir(parents=True, exist_ok=True)
        result["grid"] = str(pictures.save_image_grid(x[torch.as_tensor(rarest)], args.out_grid))
    if args.out_hist:
        Path(args.out_hist).parent.mkdir(parents=True, exist_ok=True)
        result["histogram"] = str(report.save_score_histogram(scores, detector.threshold_, outlier, args.out_hist))
    _emit(result, args.json)


def _emit(result: dict, as_json: bool) -> None:
    """One JSON object on stdout, or one `key value` line per entry."""
    if as_json:
        print(files.dumps(result))
        return
    width = max(map(len, result)) + 2
    for key, value in result.items():
        print(f"{key:<{width}}{value:.4f}" if isinstance(value, float) else f"{key:<{width}}{value}")


def _outlier_mask(labels, classes, outlier_label):
    """Which inputs are known outliers: --outlier-label, or a class named like 'outlier'; None when unknown."""
    if labels is None:
        if outlier_label is not None:
            raise GenlabError("--outlier-label was given, but this data has no labels.")
        return None
    if outlier_label is not None:
        return labels == outlier_label
    named = [i for i, c in enumerate(classes or ()) if str(c).lower() in OUTLIER_CLASS_NAMES]
    return (labels == named[0]) if named else None


def cmd_audit(args) -> None:
    from genlab import debias, report
    from genlab.runs import load_run

    if args.top < 1:
        raise GenlabError(f"--top must be a positive number of examples, not {args.top}.")
    run = load_run(args.run)
    if not can(run.model, REWEIGHTS):
        raise GenlabError(f"audit reads a DB-VAE run (genlab train dbvae); '{args.run}' is {article(run.family)}.")
    data = run.load_data(args.data)
    codes = base.codes(run.model, data.train.x).numpy()  # the training codes, encoded once for both
    result = debias.audit(run.model, data, run.history, codes)
    result["pictures"] = report.save_audit_pictures(run.model, data, run.history, run.path, args.top, codes)
    files.write_text(run.path / "audit.json", files.dumps(result, indent=1) + "\n")
    _emit(result, args.json)


def cmd_report(args) -> None:
    from genlab import report
    from genlab.runs import load_run

    run = load_run(args.run)
    out = report.write_report(run, run.load_data(args.data), importance_samples=args.importance_samples,
                              progress=not args.no_progress)
    print(f"report written to {out}")


COMMANDS = {
    "datasets": cmd_datasets,
    "train": cmd_train,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "evaluate": cmd_evaluate,
    "traverse": cmd_traverse,
    "interpolate": cmd_interpolate,
    "latent": cmd_latent,
    "report": cmd_report,
    "detect": cmd_detect,
    "audit": cmd_audit,
}
