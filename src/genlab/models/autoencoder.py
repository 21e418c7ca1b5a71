"""Deterministic autoencoder: an encoder maps x to a low-dimensional code z, a decoder reconstructs x.

Trained without labels by minimising the reconstruction loss -log p(x | decode(encode(x))), which is
binary cross-entropy for a Bernoulli decoder and a scaled squared error for a Gaussian one. An AE has no
prior; `sample` draws from a full-covariance Gaussian fitted to the training codes once training ends
(ex-post density estimation, Ghosh et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlab.models.base import RECONSTRUCTS, LatentConfig, LatentModel, Objective, codes


@dataclass(frozen=True)
class AEConfig(LatentConfig):
    pass


class AE(LatentModel):
    family = "ae"
    capabilities = LatentModel.capabilities | {RECONSTRUCTS}

    def __init__(self, config: AEConfig):
        super().__init__(config, encoder_outputs=config.latent_dim)
        # the Gaussian fitted to training codes, saved with the weights
        self.register_buffer("code_mean", torch.zeros(config.latent_dim))
        self.register_buffer("code_cholesky", torch.eye(config.latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, *input_shape) -> z: (B, latent_dim)."""
        return self.encoder(x)

    code = encode

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | decode(encode(x))): (B,) nats."""
        return -self.likelihood.log_prob(self.decode(self.encode(x)), x)

    @torch.no_grad()
    def evaluation_terms(self, x: torch.Tensor, importance_samples: int = 0) -> dict[str, torch.Tensor]:
        return {"recon_loss": self.reconstruction_loss(x)}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_mean(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes from the Gaussian fitted to the training codes, decoded: (n, *input_shape)."""
        eps = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return self.decode_mean(self.code_mean + eps @ self.code_cholesky.T)

    @torch.no_grad()
    def fit_end(self, x: torch.Tensor, batch_size: int = 1000) -> None:
        z = codes(self, x, batch_size).double()
        mean = z.mean(0)
        cov = torch.cov(z.T).reshape(len(mean), len(mean)) if len(z) > 1 else torch.eye(len(mean), dtype=z.dtype)
        cov = cov + 1e-6 * torch.eye(len(mean), dtype=cov.dtype)
        self.code_mean.copy_(mean.float())
        self.code_cholesky.copy_(torch.linalg.cholesky(cov).float())

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        recon = self.reconstruction_loss(x).mean()
        return {"loss": recon, "recon_loss": recon.detach()}

    def objectives(self) -> list[Objective]:
        return [Objective("ae", list(self.parameters()), self.loss)]

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, importance_samples: int = 0) -> torch.Tensor:
        return self.reconstruction_loss(x)
