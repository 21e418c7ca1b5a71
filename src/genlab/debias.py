"""Debiasing: sampling weights that make rare examples common, and an audit of what they found.

The weights themselves (latent histograms, a joint density, the effective sample size) live in `genlab.sampling`,
beside the sampler; the DB-VAE computes its own each epoch (`DBVAE.sampling_weights`).
Just Train Twice (Liu et al. 2021): train a plain model for a few epochs, then upweight the examples it got
wrong by `jtt_upweight` and train again. Oracle: weights 1 / (size of the example's group), using the group
labels: a reference for benchmarks, not a method.

"""

from __future__ import annotations

import numpy as np
import torch

from genlab.sampling import effective_sample_size, histogram_densities, latent_weights  # noqa: F401  (re-exported)


def fit_debiased(model, data, config, out=None, progress: bool = True, **kwargs):
    """Train a DB-VAE with the reweighting its config names. Latent and oracle weights are the model's own
    (`fit` draws by them every epoch); JTT trains a plain copy first (jtt_epochs), then trains `model` with the
    copy's training errors upweighted."""
    import dataclasses

    from genlab.train import fit

    c = model.config
    if c.reweight != "jtt":
        return fit(model, data, config, out, progress=progress, **kwargs)
    if out is not None:  # before the first model trains: a folder that will be refused is refused now
        from pathlib import Path

        from genlab.runs import check_run_dir

        check_run_dir(Path(out), resume=kwargs.get("resume", False), force=kwargs.get("force", False))
    first = type(model)(dataclasses.replace(c, reweight="none"))
    first.load_state_dict(model.state_dict())  # the same start
    fit(first, data, dataclasses.replace(config, epochs=c.jtt_epochs), None, progress=progress)
    errors = (first.predict(torch.as_tensor(data.train.x[:])) != data.train.y).numpy()
    weights = np.where(errors, c.jtt_upweight, 1.0)
    return fit(model, data, config, out, weights=torch.as_tensor(weights), progress=progress, **kwargs)


def final_weights(model, split, codes: np.ndarray | None = None) -> np.ndarray | None:
    """The weights a DB-VAE's last epoch drew by (latent, oracle), recomputed on `split`; None when they were not
    the model's own (JTT's are the first model's, fixed; none: uniform)."""
    return model.sampling_weights(split, codes) if model.config.reweight in ("latent", "oracle") else None


def audit(model, data, history: list[dict] | None = None, codes: np.ndarray | None = None) -> dict:
    """What the weights uncovered: the final weights on the training split, the effective sample size, and
    where group labels exist (never used for training) the weight share per group, how well the weights
    single out the minority groups (AUROC; minority = every group but the largest), and test accuracy per
    group with the worst of them. `codes`: the training split's latent means when already computed."""
    from sklearn.metrics import roc_auc_score

    train, test = data.train, data.test
    weights = final_weights(model, train, codes)
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
