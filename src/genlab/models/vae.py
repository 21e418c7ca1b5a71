"""Variational autoencoder (Kingma & Welling 2014), beta-VAE (Higgins et al. 2017), the IWAE bound
(Burda et al. 2016) and the VampPrior (Tomczak & Welling 2018).

  encoder: q(z | x) = N(mu(x), diag sigma(x)^2)      prior: p(z) = N(0, I)      decoder: p(x | z)
  VampPrior: p(z) = 1/K sum_k q(z | u_k), a mixture of the posteriors of K learned pseudo-inputs u_k
  ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))  <=  log p(x)
  IWAE_K(x) = E[log 1/K sum_k p(x, z_k) / q(z_k | x)], z_k ~ q: non-decreasing in K, -> log p(x)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch.distributions import Normal

from genlab.configs import require, whole
from genlab.models.base import DENSITY, POSTERIOR, LatentConfig, LatentModel, Objective

ObjectiveName = Literal["elbo", "iwae"]
OBJECTIVES = get_args(ObjectiveName)
Prior = Literal["normal", "vamp"]
PRIORS = get_args(Prior)
MAX_ROWS = 16384  # decoder rows per forward pass when estimating log p(x) with many samples


@dataclass(frozen=True)
class VAEConfig(LatentConfig):
    beta: float = 1.0  # weight of the KL term (beta-VAE when > 1)
    objective: ObjectiveName = "elbo"  # elbo | iwae
    train_samples: int = 1  # K, importance samples per example for the iwae objective
    prior: Prior = "normal"  # normal | vamp
    pseudo_inputs: int = 500  # K of the VampPrior
    kl_warmup_steps: int = 0  # the KL weight grows linearly from 0 to beta over this many training steps

    def __post_init__(self):
        super().__post_init__()
        require(self.prior in PRIORS, f"prior must be one of {', '.join(PRIORS)}, not '{self.prior}'")
        require(whole(self.pseudo_inputs, 1, 10_000),
                f"pseudo_inputs must be an integer from 1 to 10000, not {self.pseudo_inputs}")
        require(whole(self.kl_warmup_steps, 0), f"kl_warmup_steps must be an integer >= 0, not {self.kl_warmup_steps}")
        require(self.objective in OBJECTIVES,
                f"objective must be one of {', '.join(OBJECTIVES)}, not '{self.objective}'")
        require(self.beta > 0, f"beta must be positive, not {self.beta}")
        require(whole(self.train_samples, 1, 10_000),
                f"train_samples must be an integer from 1 to 10000, not {self.train_samples}")
        require(self.objective != "iwae" or self.beta == 1.0,
                "the iwae objective is a bound on log p(x) and takes no beta; use --objective elbo")


class VAE(LatentModel):
    family = "vae"
    capabilities = LatentModel.capabilities | {POSTERIOR, DENSITY}

    def __init__(self, config: VAEConfig):
        super().__init__(config, encoder_outputs=2 * config.latent_dim + self.extra_encoder_outputs(config))
        if config.prior == "vamp":
            # pseudo-inputs live in data space: through a sigmoid for [0, 1] data, as they are otherwise
            start = torch.randn(config.pseudo_inputs, *config.input_shape) * 0.1
            self.pseudo_raw = torch.nn.Parameter(start - 2.0 if config.likelihood == "bernoulli" else start)
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.int64))  # drives the KL warm-up

    def pseudo_inputs(self) -> torch.Tensor:
        """The VampPrior's K pseudo-inputs: (K, *input_shape)."""
        raw = self.pseudo_raw
        return torch.sigmoid(raw) if self.config.likelihood == "bernoulli" else raw

    @staticmethod
    def extra_encoder_outputs(config) -> int:
        """Encoder outputs beyond the posterior's mean and log-variance (the DB-VAE's class logits)."""
        return 0

    def encode(self, x: torch.Tensor) -> Normal:
        """x: (B, *input_shape) -> q(z | x), a Normal with loc and scale of shape (B, latent_dim)."""
        return self._posterior(self.encoder(x))

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of q(z | x): (B, latent_dim)."""
        return self.encode(x).loc

    def _posterior(self, out: torch.Tensor) -> Normal:
        mu, log_var = out[..., : 2 * self.config.latent_dim].chunk(2, dim=-1)
        return Normal(mu, torch.exp(0.5 * log_var), validate_args=False)

    @staticmethod
    def reparameterize(posterior: Normal, samples: int | None = None) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): a sample that gradients flow through.

        Returns (B, latent_dim), or (samples, B, latent_dim) when samples is given.
        """
        shape = posterior.loc.shape if samples is None else (samples, *posterior.loc.shape)
        eps = torch.randn(shape, dtype=posterior.loc.dtype, device=posterior.loc.device)
        return posterior.loc + posterior.scale * eps

    @staticmethod
    def kl_divergence(posterior: Normal) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) in closed form, summed over dimensions: (B,) nats."""
        mu, var = posterior.loc, posterior.scale**2
        return 0.5 * (mu**2 + var - 1.0 - torch.log(var)).sum(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): (..., latent_dim) -> (...) nats."""
        if self.config.prior == "normal":
            return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        mixture = self.encode(self.pseudo_inputs())  # K components, each (latent_dim,)
        log_components = mixture.log_prob(z.unsqueeze(-2)).sum(-1)  # (..., K)
        return torch.logsumexp(log_components, dim=-1) - math.log(self.config.pseudo_inputs)

    def kl_per_dimension(self, x: torch.Tensor, samples: int = 10) -> torch.Tensor:
        """KL(q(z_d | x) || p(z_d)) for each latent dimension d: (B, latent_dim) nats. Closed form for the Normal
        prior; for the VampPrior, Monte Carlo (`samples` draws) against its marginal p(z_d), a 1-D mixture."""
        posterior = self.encode(x)
        if self.config.prior == "normal":
            mu, var = posterior.loc, posterior.scale**2
            return 0.5 * (mu**2 + var - 1.0 - torch.log(var))
        z = self.reparameterize(posterior, samples)  # (S, B, L)
        mixture = self.encode(self.pseudo_inputs())  # (K, L) per-dimension components
        log_marginal = torch.logsumexp(mixture.log_prob(z.unsqueeze(-2)), dim=-2) - math.log(self.config.pseudo_inputs)
        return (posterior.log_prob(z) - log_marginal).mean(0)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) for x: (B, *input_shape), z: (S, B, latent_dim) -> (S, B) nats."""
        samples = len(z)
        params = self.decode(z.flatten(0, 1))
        return self.likelihood.log_prob(params, x.expand(samples, *x.shape).flatten(0, 1)).view(samples, -1)

    def kl_term(self, posterior: Normal, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)): closed form for the Normal prior, Monte Carlo over z (S, B, L) otherwise. (B,)"""
        if self.config.prior == "normal":
            return self.kl_divergence(posterior)
        return (posterior.log_prob(z).sum(-1) - self.log_prior(z)).mean(0)

    def elbo_terms(self, x: torch.Tensor, samples: int = 1) -> tuple[torch.Tensor, torch.Tensor, Normal]:
        """E_q[log p(x|z)] (Monte Carlo, `samples` draws) and KL, each (B,) nats, and q(z | x)."""
        posterior = self.encode(x)
        z = self.reparameterize(posterior, samples)  # (S, B, L)
        return self.log_px_given_z(x, z).mean(0), self.kl_term(posterior, z), posterior

    def elbo(self, x: torch.Tensor, samples: int = 1, beta: float = 1.0) -> torch.Tensor:
        """x: (B, *input_shape) -> (B,) nats: E_q[log p(x|z)] - beta * KL."""
        recon, kl, _ = self.elbo_terms(x, samples)
        return recon - beta * kl

    def log_weights(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for z_k ~ q(z | x): (B, samples) nats."""
        posterior = self.encode(x)
        z = self.reparameterize(posterior, samples)  # (K, B, L)
        log_qz = posterior.log_prob(z).sum(-1)
        return (self.log_px_given_z(x, z) + self.log_prior(z) - log_qz).T

    def iwae_bound(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """The importance-weighted bound log 1/K sum_k w_k with K = samples: (B,) nats."""
        return torch.logsumexp(self.log_weights(x, samples), dim=1) - math.log(samples)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, importance_samples: int = 1000) -> torch.Tensor:
        """log p(x) estimated by the IWAE bound with K = importance_samples: (B,) nats.

        The samples are drawn in chunks so that K = 1000 fits in memory for any batch size.
        """
        chunk = max(1, MAX_ROWS // max(1, len(x)))
        weights = []
        for start in range(0, importance_samples, chunk):
            weights.append(self.log_weights(x, min(chunk, importance_samples - start)))
        return torch.logsumexp(torch.cat(weights, 1), dim=1) - math.log(importance_samples)

    @torch.no_grad()
    def quick_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """The ELBO averaged over 10 posterior draws: (B,) nats, a lower bound on log p(x)."""
        return self.elbo(x, samples=10)

    @property
    def continuous(self) -> bool:
        return self.likelihood.continuous

    @torch.no_grad()
    def evaluation_terms(self, x: torch.Tensor, importance_samples: int = 1000) -> dict[str, torch.Tensor]:
        """-E_q[log p(x|z)], KL, the ELBO and the IWAE estimate of -log p(x), each (B,) nats."""
        recon, kl, _ = self.elbo_terms(x)
        return {"recon_loss": -recon, "kl_nats": kl, "elbo_nats": recon - kl,
                "nll_nats": -self.log_likelihood(x, importance_samples)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ p(z), decoded to E[x | z]: (n, *input_shape)."""
        eps = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        if self.config.prior == "normal":
            return self.decode_mean(eps)
        pick = torch.randint(self.config.pseudo_inputs, (n,), generator=generator).to(self.device)
        mixture = self.encode(self.pseudo_inputs())
        return self.decode_mean(mixture.loc[pick] + mixture.scale[pick] * eps)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = mean of q(z | x)]: (B, *input_shape)."""
        return self.decode_mean(self.encode(x).loc)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        if c.objective == "iwae":
            bound = self.iwae_bound(x, c.train_samples)
            return {"loss": -bound.mean(), "iwae_nats": bound.mean().detach()}
        recon, kl, _ = self.elbo_terms(x)
        loss = -(recon - self.kl_weight() * kl).mean()
        return {"loss": loss, "recon_loss": -recon.mean().detach(), "kl_nats": kl.mean().detach()}

    def kl_weight(self) -> float:
        """The KL weight of this training step: beta, ramped up over the warm-up steps (step k of them: k / steps)."""
        c = self.config
        if c.kl_warmup_steps and self.training:
            return c.beta * min(1.0, (self.steps_trained.item() + 1) / c.kl_warmup_steps)
        return c.beta

    def count_step(self) -> None:
        """After each optimiser step: one more step towards the end of the KL warm-up."""
        self.steps_trained += 1

    def objectives(self) -> list[Objective]:
        return [Objective("vae", list(self.parameters()), self.loss, after_step=self.count_step)]

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, importance_samples: int = 0) -> torch.Tensor:
        """-ELBO, or -IWAE_K when importance_samples > 0: (B,) nats."""
        if importance_samples > 0:
            return -self.log_likelihood(x, importance_samples)
        return -self.elbo(x)
