"""Debiasing VAE (Amini, Soleimany, Schwarting, Bhatia & Rus, AIES 2019).

One encoder outputs class logits beside the posterior's mean and log-variance; the decoder is the VAE's.
  loss = cross-entropy(logits, y) + w * 1[y in vae_classes] * (-E_q[log p(x|z)] + beta KL), averaged over the batch
  with w = vae_weight, by default 1 / (values per input): the VAE term in nats per pixel, on the scale of the
  cross-entropy (summed over a 28x28 image it would drown the classifier)
The VAE term learns the latent structure of the class of interest (in the paper: faces) without labels for
its hidden features; `genlab.debias` turns the density of each example's code into a sampling weight every
epoch, so that examples from rare regions of latent space are seen more often. Everything else (encoder,
decoder, likelihood, ELBO, sampling) is the VAE's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from genlab.configs import require, whole
from genlab.errors import GenlabError
from genlab.models import base
from genlab.models.vae import VAE, VAEConfig
from genlab.sampling import latent_weights

Reweight = Literal["latent", "jtt", "none", "oracle"]
REWEIGHTS = get_args(Reweight)
Aggregate = Literal["max", "product", "joint"]
AGGREGATES = get_args(Aggregate)


@dataclass(frozen=True)
class DBVAEConfig(VAEConfig):
    num_classes: int = 2
    vae_classes: tuple[int, ...] = ()  # classes whose examples get the VAE term; () = every class
    reweight: Reweight = "latent"  # latent (DB-VAE) | jtt (Just Train Twice) | none (plain training) | oracle (groups)
    aggregate: Aggregate = "max"  # latent weights: max (the MIT lab) | product (the paper) | joint (a mixture density)
    bins: int = 10  # histogram bins per latent dimension
    alpha: float = 0.001  # smoothing of the histogram densities
    temper: bool = True  # product weights: take the geometric mean over dimensions, so they cannot collapse
    jtt_epochs: int = 2  # JTT: epochs of the first, plain model whose training errors are upweighted
    jtt_upweight: float = 20.0  # JTT: weight of those errors
    vae_weight: float | None = None  # weight of the VAE term; None: 1 / (values per input), nats per value

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "vae_classes", tuple(self.vae_classes))
        require(whole(self.num_classes, 2), "num_classes must be at least 2")
        require(all(0 <= c < self.num_classes for c in self.vae_classes), "vae_classes must be class indices")
        require(self.reweight in REWEIGHTS, f"reweight must be one of {', '.join(REWEIGHTS)}")
        require(self.aggregate in AGGREGATES, f"aggregate must be one of {', '.join(AGGREGATES)}")
        require(whole(self.bins, 2), "bins must be an integer >= 2")
        require(self.alpha > 0, "alpha must be positive")
        require(whole(self.jtt_epochs, 1), "jtt_epochs must be a positive integer")
        require(self.jtt_upweight >= 1, "jtt_upweight must be >= 1")
        require(self.objective == "elbo", "the DB-VAE trains with the elbo objective")
        require(self.vae_weight is None or self.vae_weight >= 0, "vae_weight must be >= 0 or null")

    @classmethod
    def for_data(cls, meta, **overrides):
        if len(meta.classes or ()) < 2:
            raise GenlabError("a DB-VAE is a classifier: it needs labelled data with at least 2 classes "
                              "(class subfolders, or a built-in set such as nuisance:under).")
        return super().for_data(meta, **{"num_classes": len(meta.classes), **overrides})


class DBVAE(VAE):
    family = "dbvae"
    capabilities = VAE.capabilities | {base.CLASSIFIES, base.REWEIGHTS}

    @staticmethod
    def extra_encoder_outputs(config) -> int:
        return config.num_classes

    def check_data(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        super().check_data(x)
        if y is not None and (int(y.min()) < 0 or int(y.max()) >= self.config.num_classes):
            raise GenlabError(f"labels must be 0..{self.config.num_classes - 1} for this DB-VAE.")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) class logits."""
        return self.encoder(x)[:, 2 * self.config.latent_dim :]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """(B,) predicted classes."""
        return torch.cat([self.logits(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    def sampling_weights(self, split, codes_of_split: np.ndarray | None = None) -> np.ndarray | None:
        """The weights its config asks for on a split (the trainer calls this on the training split at the start
        of every epoch); None for uniform draws. `codes_of_split`: the split's latent means when already known."""
        c = self.config
        if c.reweight == "latent":
            mask = self.vae_mask(split.y).numpy()
            z = base.codes(self, split.x).numpy() if codes_of_split is None else codes_of_split
            w = np.ones(len(z))  # classes without the VAE term keep their natural frequency
            w[mask] = latent_weights(z[mask], c.bins, c.alpha, c.aggregate, c.temper) * mask.sum()
            return w / w.sum()
        if c.reweight == "oracle":
            if split.group is None:
                raise GenlabError("oracle reweighting needs group labels; this data has none.")
            g = split.group.numpy()
            return 1.0 / np.bincount(g)[g]
        if c.reweight == "jtt":
            raise GenlabError("JTT upweights the errors of a first model trained before this one: train it with "
                              "genlab.debias.fit_debiased (as genlab train dbvae --reweight jtt does).")
        return None

    def vae_mask(self, y: torch.Tensor) -> torch.Tensor:
        if not self.config.vae_classes:
            return torch.ones_like(y, dtype=torch.bool)
        return torch.isin(y, torch.tensor(self.config.vae_classes, device=y.device))

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if y is None:
            raise GenlabError("a DB-VAE needs labels to classify; this data has none.")
        out = self.encoder(x)
        logits = out[:, 2 * self.config.latent_dim :]
        ce = F.cross_entropy(logits, y)
        mask = self.vae_mask(y)
        posterior = self._posterior(out[mask])
        z = self.reparameterize(posterior, 1)
        recon, kl = self.log_px_given_z(x[mask], z).mean(0), self.kl_term(posterior, z)
        weight = self.config.vae_weight
        if weight is None:  # nats per input value: the same scale as the cross-entropy, whatever the image size
            weight = 1.0 / x[0].numel()
        vae = -weight * (recon - self.kl_weight() * kl).sum() / len(x)
        accuracy = (logits.argmax(1) == y).float().mean()
        return {"loss": ce + vae, "ce": ce.detach(), "vae_loss": vae.detach(), "accuracy": accuracy.detach()}
