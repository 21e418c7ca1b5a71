"""Outlier detection: score inputs by how well a generative model explains them.

`OutlierDetector` follows scikit-learn's estimator conventions: parameters are set in `__init__` and never
changed by `fit`; learned state ends in `_`; `fit` returns self; `score_samples` is higher for more normal
inputs; `threshold_` is the `contamination` quantile of the training scores; `predict` gives 1 (inlier) or
-1 (outlier).

Scores (per example, higher = more normal):
  recon             -reconstruction error, -log p(x | z = encoder mean)           (AE, VAE)
  elbo              the evidence lower bound on log p(x), nats                   (VAE)
  iwae              the IWAE bound with K = importance_samples, nats             (VAE)
  latent_density    log density of the encoder mean under a Gaussian mixture fitted to the training codes
  likelihood_ratio  ELBO(model) - ELBO(background), the background trained on inputs with a fraction of their
                    values replaced by noise: it explains the low-level statistics both share, so the ratio
                    keeps what is specific to the data (Ren et al. 2019)
  complexity        log2 p(x) + L(x), L the PNG-compressed size of the image in bits: a raw likelihood rates
                    simple inputs (a black image) as likely because they are easy to compress, the correction
                    removes that (Serra et al. 2020); images only
  typicality        -|(-ELBO(x)) - H|, H the mean training -ELBO: inputs are outliers when their likelihood is
                    atypical in either direction, too low or too high (Nalisnick et al. 2019b). `typicality_test`
                    is the batch form.
  capped_elbo       the ELBO up to c, the 99th percentile of the training ELBOs; above it, c - 10 (ELBO - c):
                    typicality's one-sided form, which keeps the ELBO's ranking of everything a training example
                    could score and turns an implausibly high likelihood (a blank image) against the input
  auto              the default the benchmarks pick (benchmarks/outliers.py): see AUTO_SCORE, per data kind.

Every score and threshold is finite, for any finite input:
  - tables are standardised in float64 with a floor on each column's scale (ROUNDOFF of its size), so a constant
    column divides 0 by a small number, not by 0, and a new value there lands far out;
  - standardised values are clipped to +-MAX_SIGMAS: a value that far out is an outlier whatever its size, and the
    clip keeps 3e38 from overflowing the model's float32 arithmetic (ties between such values are the price);
  - a score the model still cannot evaluate (an overflow: -inf, +inf or NaN) becomes UNSCORABLE, below every
    finite score, so that input ranks as the most outlying.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from genlab.errors import GenlabError, article
from genlab.files import write_text
from genlab.models.base import CLASSIFIES, DENSITY, ENCODES, can, codes

SCORES = ("auto", "recon", "elbo", "iwae", "latent_density", "likelihood_ratio", "complexity", "typicality",
          "capped_elbo")
AUTO_SCORE = {"image": "capped_elbo", "tabular": "elbo"}  # chosen by benchmarks/outliers.py (README)
AUTO_STEPS = 2000
MAX_WEIGHTS_BYTES = 2**30
NEEDS_CODES = ("recon", "latent_density")  # an encoder and decoder (ENCODES); every other score needs a DENSITY
CAP_QUANTILE, CAP_SLOPE = 0.99, 10.0
ROUNDOFF = 1e-6  # a column's spread below this share of its size is float32 round-off, not variation
MAX_SIGMAS = 100.0  # far beyond N(0, 1) (p < 1e-2000) yet small enough for float32 networks
# the score of an input the model cannot evaluate: below every finite score, as those are float32 sums (under 1e39
# in size) or mixture log densities of float32 codes (under 1e100)
UNSCORABLE = -1e300
# the detector's own trainings: the whole set, on the CPU, no monitoring or pictures
QUIET_TRAINING = {"val_fraction": 0.0, "device": "cpu", "monitor_every": 0, "epoch_pictures": False}


class OutlierDetector:
    """A generative model as an outlier detector; see the module docstring for the scores.

    model: "vae" or "ae", trained by `fit` on the inputs (or use `OutlierDetector.from_run`).
    epochs: None trains for about AUTO_STEPS optimiser steps (10 to 500 epochs), small sets included.
    net: the model's networks, as in the VAE config (auto: conv nets for images of side 16 or more).
    latent_dim: None gives 16 for images; for tables D // 4 clipped to 2..8, with a 64-unit MLP and a unit-scale
    Gaussian decoder in standardised units (the settings that scored best on tabular data, benchmarks/outliers.py).
    contamination: the share of the training inputs taken to be outliers; sets `threshold_`.
    background_noise: the share of values replaced by noise in the background model's inputs.
    """

    def __init__(self, model: str = "vae", score: str = "auto", contamination: float = 0.05,
                 latent_dim: int | None = None, epochs: int | None = None, batch_size: int = 100,
                 importance_samples: int = 100,
                 background_noise: float = 0.2, mixture_components: int = 10, net: str = "auto", seed: int = 0,
                 progress: bool = False):
        self.model = model
        self.score = score
        self.contamination = contamination
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.importance_samples = importance_samples
        self.background_noise = background_noise
        self.mixture_components = mixture_components
        self.net = net
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------------------------------ fitting

    def _model_class(self):
        """The family's model class; a family that scores inputs (a density or codes) and needs no labels."""
        from genlab.models import FAMILIES

        usable = [name for name, (cls, _) in FAMILIES.items()
                  if (can(cls, DENSITY) or can(cls, ENCODES)) and not can(cls, CLASSIFIES)]
        if self.model not in usable:
            raise GenlabError(f"model must be one of {', '.join(usable)}, not '{self.model}'.")
        return FAMILIES[self.model]

    def _check_params(self, kind: str) -> str:
        model_cls, _ = self._model_class()
        if self.score not in SCORES:
            raise GenlabError(f"score must be one of {', '.join(SCORES)}, not '{self.score}'.")
        if not 0 < self.contamination < 0.5:
            raise GenlabError(f"contamination must be in (0, 0.5), not {self.contamination}.")
        if not 0 < self.background_noise < 1:
            raise GenlabError(f"background_noise must be in (0, 1), not {self.background_noise}.")
        if self.score != "auto":
            score = self.score
        else:
            score = AUTO_SCORE[kind] if can(model_cls, DENSITY) else "recon"
        if score in NEEDS_CODES and not can(model_cls, ENCODES):
            raise GenlabError(f"the {score} score needs an encoder; {article(self.model)} scores by its density (elbo, "
                              "iwae, likelihood_ratio, typicality, capped_elbo, complexity).")
        if score not in NEEDS_CODES and not can(model_cls, DENSITY):
            raise GenlabError(f"the {score} score needs a density (a VAE, a flow); {article(self.model)} offers "
                              f"{' and '.join(NEEDS_CODES)}.")
        return score

    def fit(self, X, y=None) -> OutlierDetector:
        """Train a model on X (images (N, C, H, W) / (N, H, W) in [0, 1], or a table (N, D)), set threshold_."""
        import dataclasses

        from genlab.data.core import DatasetMeta
        from genlab.train import TrainConfig

        x = self._as_inputs(X, fitting=True)
        kind = "image" if x.dim() == 4 else "tabular"
        score = self._check_params(kind)
        self.kind_ = kind
        self.mean_, self.scale_ = _standardisation(x) if kind == "tabular" else (None, None)
        x = self._model_units(x)
        meta = DatasetMeta(name="detector", kind=kind, shape=tuple(x.shape[1:]))
        model_cls, config_cls = self._model_class()
        options = {"net": self.net, "latent_dim": self.latent_dim or 16}
        if kind == "tabular":
            options = {"net": self.net, "latent_dim": self.latent_dim or min(8, max(2, x.shape[1] // 4)),
                       "hidden": (64,), "likelihood": "gaussian"}
        fields = {f.name for f in dataclasses.fields(config_cls)}
        options = {k: v for k, v in options.items() if k in fields}  # what this family's config has
        epochs = self.epochs or min(500, max(10, math.ceil(AUTO_STEPS / math.ceil(len(x) / self.batch_size))))
        train = TrainConfig(epochs=epochs, batch_size=self.batch_size, seed=self.seed, **QUIET_TRAINING)
        make = lambda: model_cls(config_cls.for_data(meta, **options))  # noqa: E731
        self.model_ = self._train(make, x, meta, train)
        if score == "likelihood_ratio":
            self.background_ = self._train(make, self._noised(x), meta, train)
        return self._fit_scores(x, score)

    @classmethod
    def from_run(cls, run, score: str = "auto", contamination: float = 0.05, progress: bool = False, data=None,
                 **params) -> OutlierDetector:
        """A detector from a trained run (a path or a loaded `Run`): its model, and the threshold from its
        training split's scores (`data`: the run's dataset when already loaded). Inputs are in the run's data
        units (as `run.load_data(source)` gives them)."""
        from genlab.models import build_model
        from genlab.runs import Run, load_run
        from genlab.train import TrainConfig

        run = run if isinstance(run, Run) else load_run(run)
        if not (can(run.model, DENSITY) or can(run.model, ENCODES)) or can(run.model, CLASSIFIES):
            raise GenlabError(f"outlier scores need a model with a density or an encoder that needs no labels; "
                              f"'{run.path}' is {article(run.family)}.")
        det = cls(model=run.family, score=score, contamination=contamination, progress=progress, **params)
        data = data or run.load_data()
        det.kind_ = "image" if data.meta.kind == "image" else "tabular"
        chosen = det._check_params(det.kind_)
        det.model_ = run.model.eval()
        det.mean_ = det.scale_ = None
        x = det._model_units(torch.as_tensor(data.train.x[:]))
        if chosen == "likelihood_ratio":  # the run's model, trained again with its config on noised inputs
            train = TrainConfig.from_dict({**run.config["train"], **QUIET_TRAINING})
            det.background_ = det._train(lambda: build_model(run.family, run.config["model"]), det._noised(x),
                                         data.meta, train)
        return det._fit_scores(x, chosen)

    def _train(self, make_model, x: torch.Tensor, meta, train):
        """A model made (and initialised) under this detector's seed, trained on x; returned in eval mode."""
        from genlab.data.core import Dataset, Split
        from genlab.train import fit

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = make_model()
            fit(model, Dataset(Split(x), Split(x[:1]), meta), train, progress=self.progress)
        return model.eval()

    def _noised(self, x: torch.Tensor) -> torch.Tensor:
        """The background model's inputs: a `background_noise` share of the values replaced by noise, uniform
        [0, 1] for images, N(0, 1) for standardised tables."""
        g = torch.Generator().manual_seed(self.seed)
        replace = torch.rand(x.shape, generator=g) < self.background_noise
        noise = torch.rand(x.shape, generator=g) if self.kind_ == "image" else torch.randn(x.shape, generator=g)
        return torch.where(replace, noise, x)

    def _fit_scores(self, x: torch.Tensor, score: str) -> OutlierDetector:
        self.score_ = score
        self.n_features_in_ = int(np.prod(x.shape[1:]))
        self.input_shape_ = tuple(x.shape[1:])
        if score == "complexity" and self.kind_ != "image":
            raise GenlabError("the complexity score compresses images; use likelihood_ratio or elbo for tables.")
        if score == "latent_density":
            from sklearn.mixture import GaussianMixture

            z = codes(self.model_, x).double().numpy()
            k = max(1, min(self.mixture_components, len(z) // 20))
            mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=self.seed)
            self.mixture_ = mixture.fit(z)
        if score in ("typicality", "capped_elbo"):
            self.train_elbo_ = _finite(self._elbo(self.model_, x))
            self.elbo_cap_ = float(np.quantile(self.train_elbo_, CAP_QUANTILE))
        self.train_scores_ = self._scores(x)
        self.threshold_ = float(np.quantile(self.train_scores_, self.contamination))
        return self

    def with_score(self, score: str, X) -> OutlierDetector:
        """A detector sharing this one's trained model(s) that uses another score; its training statistics and
        threshold_ come from X (the training inputs). Compares scores without training again."""
        import copy

        self._check_fitted()
        other = copy.copy(self)
        other.score = score
        chosen = other._check_params(self.kind_)
        if chosen == "likelihood_ratio" and not hasattr(self, "background_"):
            raise GenlabError("the likelihood_ratio score needs the background model: fit with that score.")
        for name in ("train_elbo_", "mixture_", "elbo_cap_"):
            other.__dict__.pop(name, None)
        return other._fit_scores(self._prepare(X), chosen)

    # ------------------------------------------------------------------------------------------ scoring

    def score_samples(self, X) -> np.ndarray:
        """(N,) scores, higher = more normal."""
        return self._scores(self._prepare(X))

    def decision_function(self, X) -> np.ndarray:
        """score_samples(X) - threshold_: negative for outliers."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        """1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def typicality_test(self, X, batch_size: int = 2, alpha: float = 0.01, bootstrap: int = 1000) -> np.ndarray:
        """Nalisnick et al. 2019b: is each batch of `batch_size` consecutive inputs typical? -> (n_batches,) bool,
        True = out of distribution. The statistic |mean batch -ELBO - H| is compared with its (1 - alpha)
        quantile over bootstrap batches of the training inputs."""
        x = self._prepare(X)
        if not hasattr(self, "train_elbo_"):
            raise GenlabError("typicality_test needs a detector with score='typicality'.")
        nll = -_finite(self._elbo(self.model_, x))
        train_nll = -self.train_elbo_
        h = train_nll.mean()
        rng = np.random.RandomState(self.seed)
        boot = np.abs(train_nll[rng.randint(len(train_nll), size=(bootstrap, batch_size))].mean(1) - h)
        limit = np.quantile(boot, 1 - alpha)
        n = len(nll) // batch_size
        if n == 0:
            raise GenlabError(f"typicality_test needs at least batch_size = {batch_size} inputs.")
        stats = np.abs(nll[: n * batch_size].reshape(n, batch_size).mean(1) - h)
        return stats > limit

    def _scores(self, x: torch.Tensor) -> np.ndarray:
        return _finite(self._raw_scores(x))

    def _raw_scores(self, x: torch.Tensor) -> np.ndarray:
        s, m = self.score_, self.model_
        if s == "recon":
            return _batched(x, lambda b: m.likelihood.log_prob(m.decode(m.code(b)), b), progress=self.progress)
        if s == "elbo":
            return self._elbo(m, x)
        if s == "iwae":
            return _batched(x, lambda b: m.log_likelihood(b, self.importance_samples), self.seed,
                            progress=self.progress)
        if s == "latent_density":
            return self.mixture_.score_samples(codes(m, x).double().numpy())
        if s == "likelihood_ratio":
            return self._elbo(m, x) - self._elbo(self.background_, x)
        if s == "complexity":
            return self._elbo(m, x) / math.log(2) + png_bits(x)
        if s == "capped_elbo":
            elbo = self._elbo(m, x)
            return np.where(elbo <= self.elbo_cap_, elbo, self.elbo_cap_ - CAP_SLOPE * (elbo - self.elbo_cap_))
        return -np.abs(self._elbo(m, x) - self.train_elbo_.mean())  # |(-ELBO) - H|, H the mean training -ELBO

    def _elbo(self, model, x: torch.Tensor) -> np.ndarray:
        """The model's quick log p(x): a VAE's ELBO averaged over 10 posterior samples, a flow's exact value;
        draws fixed by the seed."""
        return _batched(x, model.quick_log_likelihood, self.seed, progress=self.progress)

    # ------------------------------------------------------------------------------------------ inputs

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise GenlabError("this OutlierDetector is not fitted yet: call fit(X) first, or use from_run.")

    def _prepare(self, X) -> torch.Tensor:
        self._check_fitted()
        x = self._as_inputs(X)
        if int(np.prod(x.shape[1:])) != self.n_features_in_:
            raise GenlabError(f"X has {int(np.prod(x.shape[1:]))} features per example; this detector was fitted "
                              f"on {self.n_features_in_} (shape {self.input_shape_}).")
        return self._model_units(x.reshape(len(x), *self.input_shape_))

    def _model_units(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the model takes them, float32: images checked to be in [0, 1]; tables standardised (when the
        detector standardises them itself) and clipped to +-MAX_SIGMAS."""
        if self.kind_ == "image":
            if x.min() < 0 or x.max() > 1:
                raise GenlabError("image inputs must be in [0, 1]; divide 8-bit pixels by 255.")
            return x.float()
        if self.mean_ is not None:
            x = (x.double() - self.mean_) / self.scale_
        return x.clamp(-MAX_SIGMAS, MAX_SIGMAS).float()

    def _as_inputs(self, X, fitting: bool = False) -> torch.Tensor:
        """X as a tensor: float64 for tables (standardised before the cast to float32), float32 for images."""
        try:
            array = np.asarray(X)
            x = torch.as_tensor(array.astype(np.float64 if array.ndim == 2 else np.float32))
        except (TypeError, ValueError) as e:
            raise GenlabError(f"X must be a numeric array: {e}.") from None
        if x.dim() == 3 and fitting:  # (N, H, W) grey images
            x = x.unsqueeze(1)
        if x.dim() not in (2, 3, 4) or len(x) == 0:
            raise GenlabError(f"X must be (N, D) features or (N, C, H, W) images, not shape {tuple(x.shape)}.")
        if fitting and x.dim() == 4 and x.shape[1] not in (1, 3):
            raise GenlabError(f"images must have 1 or 3 channels, not {x.shape[1]}.")
        bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
        if bad:
            raise GenlabError(f"X has {bad} of {len(x)} rows with NaN or infinite values; drop or fill them first.")
        if fitting and len(x) < 10:
            raise GenlabError(f"fit needs at least 10 examples, not {len(x)}.")
        return x

    def get_params(self, deep: bool = True) -> dict:
        import inspect

        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}

    def set_params(self, **params) -> OutlierDetector:
        for k, v in params.items():
            if k not in self.get_params():
                raise GenlabError(f"unknown parameter '{k}'.")
            setattr(self, k, v)
        return self


# ---------------------------------------------------------------------------------------------- helpers


def _standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (N, D) float64 -> per-column mean and scale, (D,) each. The scale is at least ROUNDOFF of the column's
    size (and never 0): a constant column stays at 0 and any new value in it lands far out (clipped)."""
    mean = x.mean(0)
    floor = (ROUNDOFF * mean.abs()).clamp_min(torch.finfo(torch.float32).tiny)
    return mean, torch.maximum(x.std(0), floor)


def _finite(scores: np.ndarray) -> np.ndarray:
    """Scores with each non-finite one (an overflow in the model: -inf, +inf or NaN) set to UNSCORABLE, below every
    finite score: an input the model cannot evaluate ranks as the most outlying."""
    scores = np.asarray(scores, np.float64)
    return np.where(np.isfinite(scores), scores, UNSCORABLE)


@torch.no_grad()
def _batched(x: torch.Tensor, fn, seed: int | None = None, batch_size: int = 500,
             progress: bool = False) -> np.ndarray:
    """fn over x in batches, its random draws fixed by the seed; a progress bar on stderr when asked."""
    import sys

    from tqdm.auto import tqdm

    starts = range(0, len(x), batch_size)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        parts = [fn(x[i : i + batch_size]).double().cpu()
                 for i in tqdm(starts, disable=not progress or len(starts) < 2, file=sys.stderr, desc="score",
                               unit="batch", leave=False)]
    return torch.cat(parts).numpy()


def png_bits(x: torch.Tensor) -> np.ndarray:
    """L(x): the size in bits of each image as an 8-bit PNG (Pillow, maximum compression)."""
    from PIL import Image

    pixels = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    sizes = []
    for p in pixels:
        buffer = io.BytesIO()
        Image.fromarray(p[:, :, 0] if p.shape[2] == 1 else p).save(buffer, format="PNG", optimize=True)
        sizes.append(8 * buffer.tell())
    return np.asarray(sizes, np.float64)


def sampling_weights(scores: np.ndarray, strength: float = 4.0) -> np.ndarray:
    """Sampling weights from outlier scores: by rank, 1 for the most normal example up to 1 + strength for the
    rarest, so rare examples are drawn more often in training without one outlier taking over."""
    scores = np.asarray(scores, np.float64)
    if len(scores) == 1:
        return np.ones(1)
    rarity = np.argsort(np.argsort(-scores)) / (len(scores) - 1)  # 0 for the most normal, 1 for the rarest
    return 1.0 + strength * rarity


def write_scores_csv(path: str | Path, scores: np.ndarray, flags: np.ndarray) -> Path:
    """index,score,flag,weight per input (flag 1 = outlier), written atomically; a non-finite score is written as
    UNSCORABLE, so every value is a finite number."""
    scores = _finite(scores)
    weights = sampling_weights(scores)
    lines = ["index,score,flag,weight"] + [
        f"{i},{s:.6g},{int(f)},{w:.6g}" for i, (s, f, w) in enumerate(zip(scores, flags, weights))
    ]
    return write_text(path, "\n".join(lines) + "\n")


def read_weights_csv(path: str | Path) -> torch.Tensor:
    """The `weight` column (or weights made from the `score` column) of a scores CSV, in index order."""
    import csv

    if Path(path).exists() and (not Path(path).is_file() or Path(path).stat().st_size > MAX_WEIGHTS_BYTES):
        raise GenlabError(f"the weights file '{path}' is not a CSV file of at most 1 GiB.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark from a spreadsheet is fine
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise GenlabError(f"the weights file '{path}' does not exist.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GenlabError(f"cannot read the weights file '{path}' ({e}).") from None
    if not rows or "index" not in rows[0] or not ({"weight", "score"} & set(rows[0])):
        raise GenlabError(f"'{path}' needs a header with index and weight (or score) columns, as genlab detect "
                          "--out writes.")
    try:
        index = np.array([int(r["index"]) for r in rows])
        column = "weight" if "weight" in rows[0] else "score"
        values = np.array([float(r[column]) for r in rows])
    except (TypeError, ValueError) as e:
        raise GenlabError(f"'{path}' has a value that is not a number ({e}).") from None
    if not np.isfinite(values).all():
        raise GenlabError(f"'{path}' has a {column} that is NaN or infinite; every {column} must be a finite number.")
    if sorted(index.tolist()) != list(range(len(index))):
        raise GenlabError(f"'{path}': the index column must number the examples 0..{len(index) - 1} once each.")
    values = values[np.argsort(index)]
    weights = values if column == "weight" else sampling_weights(values)
    return torch.as_tensor(weights, dtype=torch.float64)
