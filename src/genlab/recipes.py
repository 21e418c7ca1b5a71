"""Named presets of the model, data and training configs, for the common goals.

A recipe is a documented starting point, nothing more: `genlab train vae --recipe likelihood ...` takes
its values, and any flag or config-file value given beside it wins.
"""

from __future__ import annotations

from genlab.errors import GenlabError

RECIPES: dict[str, dict] = {
    "likelihood": {
        "family": "vae",
        "about": "the best test log-likelihood on small image sets (mnist5k: about 76 nats, see benchmarks): "
        "IWAE objective with K=20, 2x300 MLP, 32 latents, 1-pixel random translations, model selection "
        "on 12.5% of the training split with IWAE K=20, early stopping",
        "data": {"translate": 1},
        "model": {"net": "mlp", "hidden": [300, 300], "latent_dim": 32, "objective": "iwae", "train_samples": 20},
        "train": {"epochs": 400, "batch_size": 100, "lr": 1e-3, "val_fraction": 0.125, "val_importance_samples": 20,
                  "patience": 40},
    },
    "gan-mixture": {
        "family": "gan",
        "about": "GAN for 2-D mixtures such as grid25 (25/25 modes, ~91% high-quality samples, see benchmarks): "
        "non-saturating loss with an R1 penalty (gamma 0.1) instead of spectral norm, 3x256 MLPs, 16-d noise, "
        "learning rate 5e-4 for both nets with Adam (0.5, 0.9), batch 256, 600 epochs with a cosine schedule, "
        "sampling from the weight average",
        "data": {},
        "model": {"hidden": [256, 256, 256], "noise_dim": 16, "loss": "ns", "spectral_norm": False, "r1": 0.1,
                  "lr_g": 5e-4, "lr_d": 5e-4, "beta1": 0.5, "beta2": 0.9},
        "train": {"epochs": 600, "batch_size": 256, "lr_schedule": "cosine", "val_fraction": 0.0},
    },
}


def recipe(name: str, family: str) -> dict:
    """The recipe's data, model and train sections for `family`."""
    if name not in RECIPES:
        raise GenlabError(f"unknown recipe '{name}'; known: {', '.join(RECIPES)}.")
    r = RECIPES[name]
    if r["family"] != family:
        raise GenlabError(f"the recipe '{name}' is for the {r['family']} family, not {family}.")
    return {k: dict(r[k]) for k in ("data", "model", "train")}
