"""Debiasing: sampling weights that make rare examples common, and an audit of what they found.

Latent weights (the DB-VAE, Amini et al. 2019): encode the training set; per latent dimension d a histogram
of the means (`bins` bins) gives each example a density h_d(z_d), smoothed by `alpha`.
  max      (the MIT 6.S191 lab): w = max_d p_d, p_d = (1 / q_d) / sum(1 / q_d), q_d = (h_d + alpha) / sum_bins
  product  (the paper): w proportional to prod_d 1 / (h_d + alpha); with `temper` the geometric mean over the
           d dimensions, prod_d (...)^(1/L), which keeps the same order but cannot put all the weight on one
           or two examples
  joint    w proportional to 1 / p(z), p a Gaussian mixture fitted to the codes (scikit-learn), tempered the same
           way: rare combinations of features (a digit in another digit's colour) are rare jointly, not per
           dimension
Just Train Twice (Liu et al. 2021): train a plain model for a few epochs, then upweight the examples it got
wrong by `jtt_upweight` and train again. Oracle: weights 1 / (size of the example's group), using the group
labels: a reference for benchmarks, not a method.

Whatever the method, the effective sample size (sum w)^2 / sum w^2 says how many examples the weights
really use; the trainer logs it every epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from genlab.errors import GenlabError
from genlab.train import effective_sample_size  # noqa: F401  (re-exported: the sampler's measure)


def histogram_densities(codes: np.ndarray, bins: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(N, L) codes -> (N, L) histogram density of each example's bin in each dimension, and the per-dimension
    (density, edges) pairs (numpy.histogram with density=True; the outer edges stretched to cover all)."""
    codes = np.asarray(codes, np.float64)
    per_example = np.empty_like(codes)
    hists = []
    for d in range(codes.shape[1]):
        density, edges = np.histogram(codes[:, d], bins=bins, density=True)
        index = np.clip(np.digitize(codes[:, d], edges[1:-1]), 0, bins - 1)
        per_example[:, d] = density[index]
        hists.append((density, edges))
    return per_example, hists


def latent_weights(codes, bins: int = 10, alpha: float = 0.001, aggregate: str = "max",
                   temper: bool = True) -> np.ndarray:
    """Sampling weights (N,) summing to 1 from latent codes (N, L): high where codes are rare."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) == 0:
        raise GenlabError(f"codes must be (N, L) with N >= 1, not shape {codes.shape}.")
    if aggregate == "max":
        densities, hists = histogram_densities(codes, bins)
        totals = np.array([density.sum() + bins * alpha for density, _ in hists])  # the smoothing's normaliser
        p = totals / (densities + alpha)  # 1 / smoothed normalised density, per example and dimension
        w = (p / p.sum(0)).max(1)
    elif aggregate in ("product", "joint"):
        if aggregate == "product":
            densities, _ = histogram_densities(codes, bins)
            log_w = -np.log(densities + alpha).sum(1)
        else:  # a joint density sees combinations that per-dimension histograms cannot
            from sklearn.mixture import GaussianMixture

            k = max(1, min(10, len(codes) // 50))
            mixture = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=0).fit(codes)
            log_w = -mixture.score_samples(codes)
        if temper:
            log_w = log_w / codes.shape[1]
        w = np.exp(log_w - log_w.max())
    else:
        raise GenlabError(f"aggregate must be max, product or joint, not '{aggregate}'.")
    return w / w.sum()


@torch.no_grad()
def encode_means(model, x, batch_size: int = 500) -> np.ndarray:
    was_training = model.training
    model.eval()
    codes = torch.cat([model.encode(torch.as_tensor(x[i : i + batch_size]).to(model.device)).loc.cpu()
                       for i in range(0, len(x), batch_size)]).numpy()
    model.train(was_training)
    return codes


def model_weights(model, split, codes: np.ndarray | None = None) -> np.ndarray:
    """The weights a DB-VAE's config asks for, on a split (the training split, each epoch); `codes`: the
    split's latent means when already computed."""
    c = model.config
    if c.reweight == "latent":
        x, y = split.x, split.y
        mask = model.vae_mask(y).numpy()
        codes = encode_means(model, x) if codes is None else codes
        w = np.zeros(len(x))
        w[mask] = latent_weights(codes[mask], c.bins, c.alpha, c.aggregate, c.temper) * mask.sum()
        w[~mask] = 1.0  # classes without the VAE term keep their natural frequency
        return w / w.sum()
    if c.reweight == "oracle":
        if split.group is None:
            raise GenlabError("oracle reweighting needs group labels; this data has none.")
        g = split.group.numpy()
        return 1.0 / np.bincount(g)[g]
    return np.ones(len(split.x)) / len(split.x)


def weights_function(model):
    """For fit(weights=...): the model's weights recomputed at the start of every epoch (None: uniform)."""
    if model.config.reweight in ("none", "jtt"):
        return None
    return lambda m, split: torch.as_tensor(model_weights(m, split))


def fit_debiased(model, data, config, out=None, progress: bool = True, **kwargs):
    """Train a DB-VAE with the reweighting its config names. JTT trains a plain copy first (jtt_epochs), then
    trains `model` with the copy's training errors upweighted."""
    import copy
    import dataclasses

    from genlab.train import fit

    c = model.config
    if c.reweight != "jtt":
        return fit(model, data, config, out, weights=weights_function(model), progress=progress, **kwargs)
    if out is not None:  # before the first model trains: a folder that will be refused is refused now
        from pathlib import Path

        from genlab.runs import check_run_dir

        check_run_dir(Path(out), resume=kwargs.get("resume", False), force=kwargs.get("force", False))
    first = copy.deepcopy(model)
    fit(first, data, dataclasses.replace(config, epochs=c.jtt_epochs), None, progress=progress)
    errors = (first.predict(torch.as_tensor(data.train.x[:])) != data.train.y).numpy()
    weights = np.where(errors, c.jtt_upweight, 1.0)
    return fit(model, data, config, out, weights=torch.as_tensor(weights), progress=progress, **kwargs)


def audit(model, data, history: list[dict] | None = None, codes: np.ndarray | None = None) -> dict:
    """What the weights uncovered: the final weights on the training split, the effective sample size, and
    where group labels exist (never used for training) the weight share per group, how well the weights
    single out the minority groups (AUROC; minority = every group but the largest), and test accuracy per
    group with the worst of them. `codes`: the training split's latent means when already computed."""
    from sklearn.metrics import roc_auc_score

    train, test = data.train, data.test
    weights = model_weights(model, train, codes) if model.config.reweight in ("latent", "oracle") else None
    result: dict = {"reweight": model.config.reweight, "n_train": len(train)}
    if weights is not None:
        result["effective_sample_size"] = effective_sample_size(weights)
    if history:
        result["ess_by_epoch"] = [r.get("sampling_ess") for r in history if r.get("kind") == "epoch"]
    predicted = model.predict(torch.as_tensor(test.x[:]).to(model.device)).cpu()
    result["test_accuracy"] = float((predicted == test.y).float().mean())
    names = data.meta.groups or ()
    name = lambda k: names[k] if k < len(names) else str(k)  # noqa: E731
    if train.group is not None and weights is not None:
        g = train.group.numpy()
        largest = np.bincount(g).argmax()
        share = {name(k): float(weights[g == k].sum() / weights.sum()) for k in np.unique(g)}
        result["weight_share_by_group"] = share
        result["minority_weight_share"] = float(weights[g != largest].sum() / weights.sum())
        result["minority_train_share"] = float((g != largest).mean())
        result["minority_auroc"] = float(roc_auc_score(g != largest, weights)) if (g != largest).any() else None
    if test.group is not None:
        g = test.group.numpy()
        accuracy = {name(k): float((predicted[g == k] == test.y[g == k]).float().mean()) for k in np.unique(g)}
        result["accuracy_by_group"] = accuracy
        result["worst_group_accuracy"] = min(accuracy.values())
    return result
