"""Model families by name; each is one file with its config dataclass, its module and its objectives."""

from __future__ import annotations

from genlab.configs import build_config
from genlab.errors import GenlabError
from genlab.models.autoencoder import AE, AEConfig
from genlab.models.base import LatentConfig, LatentModel, Objective
from genlab.models.dbvae import DBVAE, DBVAEConfig
from genlab.models.flow import Flow, FlowConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig

FAMILIES = {"ae": (AE, AEConfig), "vae": (VAE, VAEConfig), "gan": (GAN, GANConfig),
            "dbvae": (DBVAE, DBVAEConfig), "flow": (Flow, FlowConfig)}


def build_model(family: str, config: dict):
    """A model of `family` from its config as a JSON dict (as config.json stores it)."""
    if family not in FAMILIES:
        raise GenlabError(f"unknown model family '{family}'; known: {', '.join(FAMILIES)}.")
    model_cls, config_cls = FAMILIES[family]
    return model_cls(build_config(config_cls, config, family))


__all__ = ["AE", "AEConfig", "DBVAE", "DBVAEConfig", "Flow", "FlowConfig", "GAN", "GANConfig",
           "VAE", "VAEConfig", "LatentConfig", "LatentModel", "Objective", "FAMILIES", "build_model"]
