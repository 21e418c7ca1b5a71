"""Known answers for the VAE: closed-form KL, an exactly solvable linear-Gaussian model, hand-computed losses."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from genlab import VAE, GenlabError, VAEConfig


def test_kl_matches_closed_form_and_monte_carlo():
    torch.manual_seed(0)
    mu, sigma = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.3, 1.5, 1.0]])
    q = Normal(mu, sigma)
    closed = (0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2))).sum()
    assert VAE.kl_divergence(q).item() == pytest.approx(closed.item(), abs=1e-6)
    assert VAE.kl_divergence(q).item() == pytest.approx(
        torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).sum().item(), abs=1e-5)
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean()
    assert monte_carlo.item() == pytest.approx(closed.item(), abs=0.02)


def linear_gaussian_vae(exact_posterior: bool):
    """Probabilistic PCA as a VAE: x = W z + b + sigma * eps, with the encoder set to the exact posterior.

    W has orthogonal columns, so the true posterior N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I,
    is diagonal and the VAE's encoder can represent it exactly.
    """
    D, d, sigma = 4, 2, 0.5
    q, _ = torch.linalg.qr(torch.tensor([[1.0, 0.2], [0.3, -1.0], [0.5, 0.4], [-0.7, 0.1]]))
    W = q * torch.tensor([2.0, 0.8])
    b = torch.tensor([0.1, -0.2, 0.3, 0.0])
    m = torch.diag(W.T @ W) + sigma**2
    A = (W / m).T  # M^-1 W^T
    post_var = sigma**2 / m
    model = VAE(VAEConfig(input_shape=(D,), latent_dim=d, hidden=(), likelihood="gaussian", gaussian_scale=sigma))
    with torch.no_grad():
        enc = model.encoder.net[0]
        shift = 0.0 if exact_posterior else 0.4
        enc.weight.copy_(torch.cat([A, torch.zeros(d, D)]))
        enc.bias.copy_(torch.cat([-A @ b + shift, torch.log(post_var * (1.0 if exact_posterior else 3.0))]))
        dec = model.decoder.net[0]
        dec.weight.copy_(W)
        dec.bias.copy_(b)
    exact = MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(D))
    return model.eval(), exact


def test_linear_gaussian_exact_posterior_makes_every_bound_exact():
    torch.manual_seed(0)
    model, exact = linear_gaussian_vae(exact_posterior=True)
    x = exact.sample((64,))
    log_p = exact.log_prob(x)
    # with q = p(z|x), every importance weight equals p(x): IWAE is exact for any K, ELBO in expectation
    assert torch.allclose(model.log_likelihood(x, importance_samples=3), log_p, atol=1e-4)
    assert torch.allclose(model.elbo(x, samples=20_000), log_p, atol=0.03)


def test_linear_gaussian_bounds_are_ordered_and_converge():
    torch.manual_seed(0)
    model, exact = linear_gaussian_vae(exact_posterior=False)
    x = exact.sample((200,))
    log_p = exact.log_prob(x).mean().item()
    with torch.no_grad():
        elbo = model.elbo(x, samples=2000).mean().item()
    iwae = {k: model.log_likelihood(x, importance_samples=k).mean().item() for k in (1, 10, 100, 5000)}
    assert elbo < iwae[10] - 0.05
    assert iwae[1] == pytest.approx(elbo, abs=0.1)
    assert iwae[1] <= iwae[10] <= iwae[100] <= iwae[5000] <= log_p + 0.01
    assert iwae[5000] == pytest.approx(log_p, abs=0.03)


def constant_decoder_vae(likelihood: str):
    """Encoder outputs mu = 0.3, log_var = log 0.25 for every input; decoder outputs c for every z."""
    model = VAE(VAEConfig(input_shape=(2,), latent_dim=1, hidden=(), likelihood=likelihood, gaussian_scale=0.5))
    with torch.no_grad():
        model.encoder.net[0].weight.zero_()
        model.encoder.net[0].bias.copy_(torch.tensor([0.3, math.log(0.25)]))
        model.decoder.net[0].weight.zero_()
        model.decoder.net[0].bias.copy_(torch.tensor([0.5, -1.0]))
    return model


KL_BY_HAND = 0.5 * (0.3**2 + 0.25 - 1 - math.log(0.25))


def test_loss_by_hand_bernoulli():
    model = constant_decoder_vae("bernoulli")
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    log_px = [math.log(sig(0.5)) + math.log(1 - sig(-1.0)), math.log(1 - sig(0.5)) + math.log(sig(-1.0))]
    out = model.loss(x)
    assert out["kl_nats"].item() == pytest.approx(KL_BY_HAND, abs=1e-6)
    assert out["recon_loss"].item() == pytest.approx(-sum(log_px) / 2, abs=1e-5)
    assert out["loss"].item() == pytest.approx(-sum(log_px) / 2 + KL_BY_HAND, abs=1e-5)


def test_loss_by_hand_gaussian_and_beta():
    model = constant_decoder_vae("gaussian")
    x = torch.tensor([[1.0, 0.0]])
    log_px = sum(-0.5 * ((v - c) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
                 for v, c in zip([1.0, 0.0], [0.5, -1.0]))
    assert model.loss(x)["loss"].item() == pytest.approx(-log_px + KL_BY_HAND, abs=1e-5)
    beta4 = VAE(VAEConfig(input_shape=(2,), latent_dim=1, hidden=(), likelihood="gaussian", gaussian_scale=0.5,
                          beta=4.0))
    beta4.load_state_dict(model.state_dict())
    assert beta4.loss(x)["loss"].item() == pytest.approx(-log_px + 4 * KL_BY_HAND, abs=1e-5)


def test_iwae_objective_with_one_sample_is_the_elbo_in_expectation():
    torch.manual_seed(0)
    model = constant_decoder_vae("gaussian")
    iwae1 = VAE(VAEConfig(input_shape=(2,), latent_dim=1, hidden=(), likelihood="gaussian", gaussian_scale=0.5,
                          objective="iwae", train_samples=1))
    iwae1.load_state_dict(model.state_dict())
    x = torch.tensor([[1.0, 0.0]])
    # the decoder ignores z, so log w = log p(x) + log p(z) - log q(z|x); its mean over z is the ELBO
    many = x.expand(200_000, 2)
    assert iwae1.loss(many)["loss"].item() == pytest.approx(model.loss(x)["loss"].item(), abs=0.01)


def test_sample_and_reconstruct_shapes_and_range():
    model = VAE(VAEConfig(input_shape=(1, 28, 28), latent_dim=3))
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 28, 28) and 0 <= s.min() and s.max() <= 1
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, again)
    assert model.reconstruct(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("bad", [dict(latent_dim=0), dict(beta=-1.0), dict(objective="gan"),
                                 dict(objective="iwae", beta=2.0), dict(likelihood="poisson"),
                                 dict(input_shape=(1, 2)), dict(train_samples=0)])
def test_bad_config_values_raise_genlab_error(bad):
    with pytest.raises(GenlabError):
        VAEConfig(**{"input_shape": (4,), **bad})


def test_vampprior_log_prior_is_the_hand_computed_mixture():
    model = VAE(VAEConfig(input_shape=(2,), latent_dim=1, hidden=(), likelihood="gaussian", prior="vamp",
                          pseudo_inputs=2))
    with torch.no_grad():  # q(z | u) = N(u_0, 0.5^2); pseudo-inputs u = (1, 0) and (-2, 0)
        model.encoder.net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        model.encoder.net[0].bias.copy_(torch.tensor([0.0, math.log(0.25)]))
        model.pseudo_raw.copy_(torch.tensor([[1.0, 0.0], [-2.0, 0.0]]))

    def normal_pdf(z, m, s):
        return math.exp(-0.5 * ((z - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    for z in (0.5, -1.0, 3.0):
        by_hand = math.log(0.5 * normal_pdf(z, 1.0, 0.5) + 0.5 * normal_pdf(z, -2.0, 0.5))
        assert model.log_prior(torch.tensor([[z]])).item() == pytest.approx(by_hand, abs=1e-5)


def test_vampprior_trains_samples_and_bounds_agree():
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=(16,), prior="vamp", pseudo_inputs=5))
    x = torch.rand(10, 1, 8, 8)
    out = model.loss(x)
    out["loss"].backward()
    assert model.pseudo_raw.grad is not None and model.pseudo_raw.grad.abs().sum() > 0
    assert model.sample(4).shape == (4, 1, 8, 8)
    with torch.no_grad():
        assert model.elbo(x, samples=500).mean() <= model.log_likelihood(x, 500).mean() + 0.5


def test_kl_warmup_weight_grows_linearly_to_beta():
    model = constant_decoder_vae("gaussian")
    warm = VAE(VAEConfig(input_shape=(2,), latent_dim=1, hidden=(), likelihood="gaussian", gaussian_scale=0.5,
                         kl_warmup_steps=4))
    warm.load_state_dict(model.state_dict())
    x = torch.tensor([[1.0, 0.0]])
    recon_only = model.loss(x)["loss"].item() - KL_BY_HAND
    (objective,) = warm.objectives()
    losses = []
    for _ in range(6):  # as the trainer does: a loss, an optimiser step, then after_step
        losses.append(objective.loss(x, None)["loss"].item())
        objective.after_step()
    expected = [recon_only + KL_BY_HAND * min(1, (i + 1) / 4) for i in range(6)]
    assert losses == pytest.approx(expected, abs=1e-5)
    assert warm.steps_trained.item() == 6
