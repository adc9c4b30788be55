"""Generative adversarial network (Goodfellow et al. 2014), trained by simultaneous
updates inside the shared one-optimizer training loop.

One scalar carries both players: the critic's loss, computed on fake samples detached
from the generator, plus the generator's loss, computed through the critic with its
parameters detached (``torch.func.functional_call``). Each term's gradient therefore
reaches only its own network, and one optimizer step updates both. The model is
implicit: it defines no likelihood, so evaluation reports sample metrics only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from dgm import seeded_random
from dgm.capabilities import SPATIAL_LATENTS, has
from dgm.conditions import ConditionEncoder, attach, widened
from dgm.contract import CRITIC, GENERATOR, Batch, Family, Grid, Prior
from dgm.errors import RecipeError
from dgm.priors import StandardNormal
from dgm.settings import Count
from dgm.sizes import sample_shape

GANLoss = Literal["non-saturating", "hinge"]
LOSSES: tuple[str, ...] = ("non-saturating", "hinge")
NORMALISED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                     nn.ConvTranspose2d, nn.ConvTranspose3d)
"""Layers whose weights spectral normalisation constrains."""


def critic_loss(real_scores: Tensor, fake_scores: Tensor, loss: GANLoss) -> Tensor:
    """The critic's loss per example: it wants high scores on data, low on samples."""
    if loss == "hinge":
        return F.relu(1 - real_scores) + F.relu(1 + fake_scores)
    return F.softplus(-real_scores) + F.softplus(fake_scores)


def generator_loss(fake_scores: Tensor, loss: GANLoss) -> Tensor:
    """The generator's loss per example: it wants high critic scores on its samples."""
    if loss == "hinge":
        return -fake_scores
    return F.softplus(-fake_scores)


def r1_penalty(critic: Callable[[Tensor], Tensor], real: Tensor) -> tuple[Tensor, Tensor]:
    """Critic scores of ``real`` and the squared norm of their gradient with respect to
    ``real``, per example (Mescheder et al. 2018); differentiable in the critic."""
    real = real.detach().requires_grad_(True)
    scores = critic(real)
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return scores, grad.flatten(1).square().sum(1)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Parametrise every linear and convolutional layer of ``module`` with spectral
    normalisation (Miyato et al. 2018), in place; returns ``module``."""
    for layer in list(module.modules()):
        if isinstance(layer, NORMALISED_LAYERS):
            add_spectral_norm(layer)
    return module


class GAN(Family):
    """x = G(z) with z ~ p(z); a critic D scores examples, one real number each.

    ``loss`` picks the objective: ``"non-saturating"`` (the logistic loss, with the
    generator maximising log D(G(z))) or ``"hinge"``. ``r1_gamma`` weights the R1
    penalty gamma/2 * E||grad_x D(x)||^2 on real data (0 disables it). The critic learns
    at ``critic_lr_ratio`` times the generator's learning rate; both use Adam ``betas``.
    Samples are clamped to ``value_range``; with ``grid`` (discrete data; or ``levels``,
    that many values on [-1, 1]) they are rounded to it. Training sees the generator's
    continuous output.

    A conditional GAN (Mirza & Osindero 2014) is built with two condition encoders: the
    generator's, whose encoding is attached to z, and the critic's, attached to the
    critic's input; each learns with its own network.
    """

    likelihood_kind = "none"
    roles = (GENERATOR, CRITIC)
    capabilities = frozenset({"sized-sampling"})

    def __init__(self, generator: nn.Module, critic: nn.Module, prior: Prior,
                 loss: GANLoss = "non-saturating", r1_gamma: float = 0.0,
                 critic_lr_ratio: float = 1.0,
                 betas: tuple[float, float] = (0.5, 0.999), levels: int | None = None,
                 grid: Grid | None = None,
                 value_range: tuple[float, float] = (-1.0, 1.0),
                 data_shape: tuple[int, ...] | None = None,
                 condition_encoder: ConditionEncoder | None = None,
                 critic_condition_encoder: ConditionEncoder | None = None) -> None:
        super().__init__()
        if (condition_encoder is None) != (critic_condition_encoder is None):
            raise ValueError("a conditional GAN needs a condition encoder for the generator "
                             "and one for the critic")
        self.condition_encoder = condition_encoder
        self.critic_condition_encoder = critic_condition_encoder
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if r1_gamma < 0:
            raise ValueError(f"r1_gamma must be 0 (off) or positive, got {r1_gamma}")
        if critic_lr_ratio <= 0:
            raise ValueError(f"critic_lr_ratio must be positive, got {critic_lr_ratio}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(betas)}")
        if levels is not None and levels < 2:
            raise ValueError(f"levels must be at least 2 (or None), got {levels}")
        self.generator = generator
        self.critic = critic
        self.prior = prior
        self.loss_name = loss
        self.r1_gamma = r1_gamma
        self.critic_lr_ratio = critic_lr_ratio
        self.betas = (float(betas[0]), float(betas[1]))
        self.grid = grid if grid is not None else (Grid(levels) if levels else None)
        self.levels = self.grid.levels if self.grid is not None else None
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.data_shape = tuple(data_shape) if data_shape is not None else None

    def score(self, x: Tensor, e: Tensor | None = None) -> Tensor:
        """Critic scores, one per example: ``(B,)`` (given the critic's encoding ``e`` of
        the condition)."""
        return self.critic(x if e is None else attach(x, e)).reshape(x.shape[0])

    def score_with_frozen_critic(self, x: Tensor, e: Tensor | None = None) -> Tensor:
        """Critic scores through detached critic parameters: gradients reach ``x`` (and
        so the generator) but never the critic."""
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        inputs = x if e is None else attach(x, e.detach())
        return functional_call(self.critic, frozen, (inputs,)).reshape(x.shape[0])

    def critic_term(self, real: Tensor, fake: Tensor, e: Tensor | None = None
                    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The critic's loss (with the R1 penalty) on ``real`` and detached ``fake``."""
        fake = fake.detach()
        if self.r1_gamma > 0:
            real_scores, grad_sq = r1_penalty(lambda x: self.score(x, e), real)
            r1 = grad_sq.mean()
        else:
            real_scores, r1 = self.score(real, e), real.new_zeros(())
        fake_scores = self.score(fake, e)
        d_loss = critic_loss(real_scores, fake_scores, self.loss_name).mean()
        logs = {"d_loss": d_loss, "d_real": real_scores.mean(), "d_fake": fake_scores.mean(),
                "r1": r1}
        return d_loss + 0.5 * self.r1_gamma * r1, {k: v.detach() for k, v in logs.items()}

    def generator_term(self, fake: Tensor, e: Tensor | None = None) -> Tensor:
        """The generator's loss on ``fake``; its gradient reaches only the generator."""
        return generator_loss(self.score_with_frozen_critic(fake, e), self.loss_name).mean()

    def generate(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """G(z), or G(z, c) for a conditional GAN."""
        if self.condition_encoder is None:
            return self.generator(z)
        if c is None:
            raise ValueError("this GAN is conditional: pass the condition c")
        return self.generator(attach(z, self.condition_encoder(c, z.shape[0])))

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        real, c = batch["x"], batch.get("c")
        fake = self.generate(self.prior.sample(real.shape[0]).to(real.dtype), c)
        e = None if self.critic_condition_encoder is None else \
            self.critic_condition_encoder(c, real.shape[0])
        d_total, logs = self.critic_term(real, fake, e)
        g_loss = self.generator_term(fake, e)
        logs["g_loss"] = g_loss.detach()
        return d_total + g_loss, logs

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """The critic (and its condition encoder) at ``lr * critic_lr_ratio``, everything
        else (generator, its condition encoder, any learned prior) at ``lr``; both with
        this GAN's Adam betas."""
        critic = list(self.critic.parameters())
        if self.critic_condition_encoder is not None:
            critic += list(self.critic_condition_encoder.parameters())
        in_critic = {id(p) for p in critic}
        rest = [p for p in self.parameters() if id(p) not in in_critic]
        return [{"params": rest, "lr": lr, "betas": self.betas},
                {"params": critic, "lr": lr * self.critic_lr_ratio, "betas": self.betas}]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None, size: tuple[int, int] | None = None
               ) -> Tensor:
        """``n`` samples of G(z). ``size`` = (height, width) draws a noise map for that
        output size, where the generator is spatial (capability ``spatial-latents``)."""
        z = self.prior.sample(n, generator)
        if size is not None:
            z = self._latents_for(n, size, generator, z.device)
        c = self.condition_for_sampling(condition, n, generator, z.device)
        x = self.generate(z, c)
        x = x.clamp(*self.value_range)
        return x if self.grid is None else self.grid.quantize(x)

    def _latents_for(self, n: int, size: tuple[int, int], generator: torch.Generator | None,
                     device: torch.device) -> Tensor:
        if not has(self.generator, SPATIAL_LATENTS):
            raise ValueError(f"the generator ({type(self.generator).__name__}) maps one "
                             "latent vector to the training size only; a spatial generator "
                             "(capability 'spatial-latents') makes any size")
        latent_shape = self.generator.latent_shape
        if self.data_shape is None:
            raise ValueError("this GAN was built without data_shape, so it samples only at "
                             "the training size")
        if not isinstance(self.prior, StandardNormal):
            raise ValueError(f"sampling at another size needs a standard normal prior, not "
                             f"{type(self.prior).__name__}")
        shape = sample_shape(self.data_shape, size, self.generator, "generator")
        return seeded_random.randn((n, *latent_shape(shape)), generator, device)


def build_gan(ctx, latent_dim: Count = 32, loss: GANLoss = "non-saturating",
              r1_gamma: float = 0.0, spectral_norm: bool = False,
              critic_lr_ratio: float = 1.0, betas: list[float] | None = None,
              snap_to_levels: bool = True) -> GAN:
    """Registered as ``core:gan``: networks ``generator`` (z to a data-shaped tensor in
    [-1, 1]) and ``critic`` (an example to one score) from the recipe or the modality.

    ``latent_dim`` is the size of z ~ N(0, I); ``loss`` is ``"non-saturating"`` or
    ``"hinge"``; ``r1_gamma`` weights the R1 gradient penalty on real data (0: off);
    ``spectral_norm`` constrains every linear and conv layer of the critic;
    ``critic_lr_ratio`` is the critic's learning rate over the generator's
    (``train.lr``); ``betas`` are Adam's for both networks (default [0.5, 0.999]);
    ``snap_to_levels`` rounds samples of discrete data to the data's grid of levels.

    A *spatial* generator (capability ``spatial-latents``: ``latent_shape(data_shape)``, e.g. a
    texture generator on a noise map with ``latent_dim`` channels) gets a prior over
    latents of that shape, and samples at any size it supports (``dgm sample --size``).

    With ``condition.use`` the generator gets ``condition.dim`` more latent inputs and
    the critic as many more input channels (each its own encoded condition).
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
    condition = ctx.condition_encoder()
    critic_condition = ctx.condition_encoder()
    extra = condition.dim if condition is not None else 0
    generator = ctx.network(GENERATOR, data_shape=ctx.info.shape,
                            latent_dim=latent_dim + extra)
    critic = ctx.network(CRITIC, data_shape=widened(tuple(ctx.info.shape), extra))
    if spectral_norm:
        apply_spectral_norm(critic)
    latent_shape = generator.latent_shape if has(generator, SPATIAL_LATENTS) else None
    if latent_shape is not None and condition is not None:
        raise RecipeError(f"{ctx.recipe.where('[networks.generator]')}: the spatial "
                          f"generator {type(generator).__name__} maps a noise map, and "
                          "conditioning a noise map is not supported yet; use a generator "
                          "of one latent vector or condition.use = false")
    prior = ctx.prior(tuple(latent_shape(ctx.info.shape)) if latent_shape else (latent_dim,))
    return GAN(generator, critic, prior, loss=loss, r1_gamma=r1_gamma,
               critic_lr_ratio=critic_lr_ratio,
               betas=tuple(betas) if betas is not None else (0.5, 0.999),
               grid=ctx.info.grid if snap_to_levels else None,
               value_range=tuple(ctx.info.value_range),
               data_shape=ctx.info.shape, condition_encoder=condition,
               critic_condition_encoder=critic_condition)
