"""Variational autoencoder (Kingma & Welling 2014) with an IWAE likelihood estimate
(Burda et al. 2016) for evaluation."""

from __future__ import annotations

import math

import torch
from einops import repeat
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from dgm.conditions import ConditionEncoder, attach, widened
from dgm.contract import DECODER, ENCODER, Batch, Family, Likelihood, LogLikelihood, Prior
from dgm.priors import StandardNormal
from dgm.settings import Count


class VAE(Family):
    """q(z|x) = N(mean, diag(exp(log_var))) from the encoder; p(x|z) from the decoder
    through the likelihood; p(z) from the prior. Trained by the (beta-weighted) ELBO.

    With a ``condition_encoder`` it is a conditional VAE (Sohn et al. 2015): the encoded
    condition e(c) is attached to the encoder's input, q(z|x, c), and to z at the
    decoder's, p(x|z, c); the prior stays p(z), so the ELBO bounds log p(x | c)."""

    likelihood_kind = "bound"
    roles = (ENCODER, DECODER)
    capabilities = frozenset({"encodes"})

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 prior: Prior, beta: float = 1.0, sample_mean: bool = False,
                 condition_encoder: ConditionEncoder | None = None) -> None:
        super().__init__()
        self.condition_encoder = condition_encoder
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.beta = beta
        self.sample_mean = sample_mean

    def _decode_params(self, z: Tensor, e: Tensor | None) -> Tensor:
        return self.decoder(z if e is None else attach(z, e))

    def encode(self, x: Tensor, e: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x) (q(z|x, c) given the encoded condition
        ``e``), each ``(B, *prior.shape)``."""
        stats = self.encoder(x if e is None else attach(x, e))
        mean, log_var = stats.chunk(2, dim=1)
        shape = (x.shape[0], *self.prior.shape)
        return mean.reshape(shape), log_var.clamp(-30, 20).reshape(shape)

    def _kl(self, z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
        if isinstance(self.prior, StandardNormal):
            q = _posterior(mean, log_var)
            p = Normal(torch.zeros_like(mean), torch.ones_like(mean), validate_args=False)
            return kl_divergence(q, p).flatten(1).sum(1)
        return _log_q(z, mean, log_var) - self.prior.log_prob(z)

    def elbo_terms(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-example reconstruction log-likelihood and KL, in nats."""
        e = self.encoded_condition(c, x.shape[0])
        mean, log_var = self.encode(x, e)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        rec = self.likelihood.log_prob(self._decode_params(z, e), x)
        return rec, self._kl(z, mean, log_var)

    def elbo(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        rec, kl = self.elbo_terms(x, c)
        return rec - kl

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        rec, kl = self.elbo_terms(batch["x"], batch.get("c"))
        loss = -(rec - self.beta * kl).mean()
        return loss, {"elbo": (rec - kl).mean().detach(), "rec": rec.mean().detach(),
                      "kl": kl.mean().detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None) -> Tensor:
        z = self.prior.sample(n, generator)
        c = self.condition_for_sampling(condition, n, generator, z.device)
        e = self.encoded_condition(c, n)
        params = self._decode_params(z, e)
        if self.sample_mean:
            return self.likelihood.mean(params)
        return self.likelihood.sample(params, generator)

    @torch.no_grad()
    def decode(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """The likelihood's mean at latents ``z`` (given ``c`` when conditional)."""
        return self.likelihood.mean(self._decode_params(z, self.encoded_condition(
            c, z.shape[0])))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The likelihood's mean at the posterior mean of z."""
        e = self.encoded_condition(c, x.shape[0])
        return self.likelihood.mean(self._decode_params(self.encode(x, e)[0], e))

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, c: Tensor | None = None, k: Count = 1000,
                       chunk: Count = 100) -> LogLikelihood:
        """Importance-weighted estimate with ``k`` samples from q(z|x): a lower bound on
        log p(x) (log p(x | c) when conditional) in expectation that tightens as ``k``
        grows (k=1 is the ELBO)."""
        e = self.encoded_condition(c, x.shape[0])
        mean, log_var = self.encode(x, e)
        log_weights = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            mean_k = repeat(mean, "b ... -> (m b) ...", m=m)
            log_var_k = repeat(log_var, "b ... -> (m b) ...", m=m)
            z = mean_k + torch.exp(0.5 * log_var_k) * torch.randn_like(mean_k)
            x_k = repeat(x, "b ... -> (m b) ...", m=m)
            e_k = None if e is None else repeat(e, "b d -> (m b) d", m=m)
            log_w = (self.likelihood.log_prob(self._decode_params(z, e_k), x_k)
                     + self.prior.log_prob(z)
                     - _log_q(z, mean_k, log_var_k))
            log_weights.append(log_w.reshape(m, x.shape[0]))
        log_w = torch.cat(log_weights, 0)
        values = torch.logsumexp(log_w, 0) - math.log(k)
        return LogLikelihood(values, "bound", f"IWAE, k={k}")


def _posterior(mean: Tensor, log_var: Tensor) -> Normal:
    return Normal(mean, torch.exp(0.5 * log_var), validate_args=False)


def _log_q(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log q(z|x) in nats per example."""
    return _posterior(mean, log_var).log_prob(z).flatten(1).sum(1)


def build_vae(ctx, latent_dim: Count = 16, beta: float = 1.0, sample_mean: bool = False) -> VAE:
    """Registered as ``core:vae``: networks ``encoder`` and ``decoder`` from the recipe or
    the modality. ``latent_dim`` is the size of z; ``beta`` weights the KL term in
    training (evaluation always uses the true ELBO/IWAE); ``sample_mean`` makes samples
    the likelihood's mean instead of a draw from it. With ``condition.use`` the encoder
    sees ``condition.dim`` more input channels and the decoder that many more latent
    inputs (the encoded condition)."""
    likelihood = ctx.likelihood()
    condition = ctx.condition_encoder()
    extra = condition.dim if condition is not None else 0
    encoder = ctx.network(ENCODER, data_shape=widened(tuple(ctx.info.shape), extra),
                          latent_dim=latent_dim)
    decoder = ctx.network(DECODER, data_shape=ctx.info.shape, latent_dim=latent_dim + extra,
                          param_channels=likelihood.param_channels)
    prior = ctx.prior((latent_dim,))
    return VAE(encoder, decoder, likelihood, prior, beta=beta, sample_mean=sample_mean,
               condition_encoder=condition)
