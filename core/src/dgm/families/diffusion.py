"""Denoising diffusion (Ho et al. 2020): any denoiser network paired with diffusers'
schedulers. Training uses the DDPM forward process; sampling uses DDPM, DDIM or
DPM-Solver++ at any number of steps; evaluation reports the variational bound on the
negative log-likelihood with a discretized decoder, so diffusion joins the likelihood
table next to exact families."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm import seeded_random
from dgm.conditions import ConditionEncoder
from dgm.contract import CONDITION_DIM, DENOISER, Batch, DataInfo, Family, LogLikelihood
from dgm.settings import Count
from dgm.sizes import sample_shape

if TYPE_CHECKING:
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

Sampler = Literal["ddpm", "ddim", "dpm-solver++"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm-solver++")
Prediction = Literal["epsilon", "v_prediction"]
SNAP_BELOW = 0.5
"""Snap estimates of x_0 where the noise std is below this many grid steps."""


def make_sampler(name: str, training: DDPMScheduler, clip: bool) -> SchedulerMixin:
    """A diffusers scheduler for sampling, sharing the training noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = training.config
    if name == "ddpm":
        return DDPMScheduler.from_config(config, clip_sample=clip)
    if name == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=clip, timestep_spacing="trailing")
    if name == "dpm-solver++":
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, thresholding=False,
            timestep_spacing="trailing")
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


class Diffusion(Family):
    """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps; the denoiser predicts eps or v from
    (x_t, t, e(c)) and is trained by the mean squared error (Ho et al.'s L_simple).

    The denoiser is any module called as ``denoiser(x_t, t, condition)`` returning a
    tensor shaped like ``x_t``; ``condition`` is the encoded condition ``(B, dim)`` of a
    conditional model and None otherwise. A conditional model trained with condition
    dropout samples with classifier-free guidance (Ho & Salimans 2022): the prediction
    is u + guidance * (p - u), u the unconditional and p the conditional one, so
    guidance 0 samples p(x), 1 samples p(x | c), and more sharpens towards c.
    """

    likelihood_kind = "bound"
    roles = (DENOISER,)
    capabilities = frozenset({"sized-sampling"})

    def __init__(self, denoiser: nn.Module, info: DataInfo, timesteps: int = 1000,
                 beta_schedule: str = "linear", prediction: Prediction = "epsilon",
                 sampler: Sampler = "dpm-solver++", sampling_steps: int = 20,
                 snap_to_grid: bool = True,
                 condition_encoder: ConditionEncoder | None = None,
                 guidance: float = 1.0) -> None:
        from diffusers import DDPMScheduler  # imported here: it takes seconds

        super().__init__()
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction must be 'epsilon' or 'v_prediction', got "
                             f"{prediction!r}")
        if guidance < 0:
            raise ValueError(f"guidance must be 0 or more, got {guidance}")
        self.condition_encoder = condition_encoder
        self.guidance = guidance
        make_sampler(sampler, DDPMScheduler(), clip=False)  # unknown names fail at build
        if sampling_steps < 1:
            raise ValueError(f"sampling_steps must be at least 1, got {sampling_steps}")
        self.denoiser = denoiser
        self.info = info
        self.scheduler = DDPMScheduler(num_train_timesteps=timesteps,
                                       beta_schedule=beta_schedule, prediction_type=prediction)
        self.prediction = prediction
        self.sampler = sampler
        self.sampling_steps = sampling_steps
        self.discrete = info.levels is not None
        self.snap_to_grid = snap_to_grid and self.discrete
        alphas_cumprod = self.scheduler.alphas_cumprod.double()
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)

    # ------------------------------------------------------------------ training
    def predict(self, x_t: Tensor, t: Tensor, e: Tensor | None = None,
                guidance: float = 1.0) -> Tensor:
        """The denoiser's output (eps or v) at integer timesteps ``t`` given the encoded
        condition ``e``; with ``guidance`` other than 1, the classifier-free guided
        combination of the conditional and the unconditional ("no condition") output."""
        if e is None or guidance == 1.0:
            return self.denoiser(x_t, t, e)
        null = self.condition_encoder.encode(None, x_t.shape[0]).to(e.dtype)
        if guidance == 0.0:
            return self.denoiser(x_t, t, null)
        both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([e, null]))
        conditional, unconditional = both.chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        x0 = batch["x"]
        e = self.encoded_condition(batch.get("c"), x0.shape[0])
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],),
                          device=x0.device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        target = noise if self.prediction == "epsilon" else \
            self.scheduler.get_velocity(x0, noise, t)
        loss = F.mse_loss(self.predict(x_t, t, e).float(), target.float())
        return loss, {"mse": loss.detach()}

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None, sampler: str | None = None,
               steps: int | None = None, size: tuple[int, int] | None = None,
               guidance: float | None = None) -> Tensor:
        """``n`` samples with ``sampler`` ("ddpm", "ddim" or "dpm-solver++") at ``steps``
        network evaluations (defaults: the recipe's). Discrete data is snapped to its
        grid. ``condition`` holds ``n`` raw conditions (random classes when it is None);
        ``guidance`` is the classifier-free guidance scale (default: the recipe's).
        ``size`` = (height, width) samples at another size than the data's, where the
        denoiser is fully convolutional (see :mod:`dgm.sizes`)."""
        guidance = self.guidance if guidance is None else guidance
        if guidance < 0:
            raise ValueError(f"guidance must be 0 or more, got {guidance}")
        shape = sample_shape(self.info.shape, size, self.denoiser, "denoiser")
        device = self.alphas_cumprod.device
        scheduler = make_sampler(sampler or self.sampler, self.scheduler, clip=self.discrete)
        steps = steps or self.sampling_steps
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        scheduler.set_timesteps(min(steps, self.scheduler.config.num_train_timesteps),
                                device=device)
        c = self.condition_for_sampling(condition, n, generator, device)
        e = self.encoded_condition(c, n)
        x = seeded_random.randn((n, *shape), generator, device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(x, t)
            steps_t = t.expand(n).to(device)
            x0 = self.estimate_x0(model_in, steps_t, e, guidance)
            if self.discrete:  # every sampler, not only DDPM's clip_sample, stays in range
                x0 = x0.clamp(*self.info.value_range)
            out = self._as_prediction(model_in, steps_t, x0)
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        return self._to_data(x)

    def _to_data(self, x: Tensor) -> Tensor:
        return self.info.grid.quantize(x) if self.discrete else x

    # ------------------------------------------------------------------ the model's x_0
    def estimate_x0(self, x_t: Tensor, t: Tensor, e: Tensor | None = None,
                    guidance: float = 1.0) -> Tensor:
        """The reverse process's estimate of x_0 from x_t (given the encoded condition
        ``e``): the denoiser's, pulled onto the data grid where the noise is below half a
        bin (``snap_to_grid``)."""
        a = _expand(self.alphas_cumprod[t], x_t)
        e = None if e is None else e.float()
        out = self.predict(x_t.float(), t, e, guidance).to(x_t.dtype)
        if self.prediction == "epsilon":
            x0 = (x_t - (1 - a).sqrt() * out) / a.sqrt()
        else:
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
        return self._snap(x0, a) if self.snap_to_grid else x0

    def _snap(self, x0: Tensor, a: Tensor) -> Tensor:
        """Per-element posterior mean over the grid, treating x0 as an observation with
        the noise of x_t / sqrt(a) around x_0 and a uniform prior on the grid: exact in
        the limit of small noise, where a network cannot resolve the residual. Only the
        five grid points nearest x0 carry weight (the next is 2.5 bins away, where the
        noise is under half a bin: a weight below e^-12), so 256 levels cost as few as 2."""
        grid = self.info.grid
        low, step = grid.low, grid.bin_width
        noise = ((1 - a) / a).sqrt()
        snap = noise < step * SNAP_BELOW
        if not bool(snap.any()):
            return x0
        offsets = torch.arange(-2, 3, dtype=x0.dtype, device=x0.device)
        index = torch.round((x0 - low) / step).clamp(0, self.info.levels - 1).unsqueeze(-1) \
            + offsets
        grid = low + index * step
        logits = -(x0.unsqueeze(-1) - grid) ** 2 / (2 * noise.unsqueeze(-1) ** 2)
        logits = logits.masked_fill((index < 0) | (index > self.info.levels - 1), -torch.inf)
        snapped = (torch.softmax(logits, -1) * grid).sum(-1)
        return torch.where(snap, snapped, x0)

    def _as_prediction(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The denoiser output (eps or v) that corresponds to estimate ``x0``."""
        a = _expand(self.alphas_cumprod[t], x_t)
        if self.prediction == "epsilon":
            return (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return (a.sqrt() * x_t - x0) / (1 - a).sqrt()

    # ------------------------------------------------------------------ likelihood

    def _posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Mean of q(x_{t-1} | x_t, x_0) for t >= 1 (0-based timesteps)."""
        a = _expand(self.alphas_cumprod[t], x_t)
        a_prev = _expand(self.alphas_cumprod[t - 1], x_t)
        beta = 1 - a / a_prev
        return (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x_t) / (1 - a)

    def _posterior_var(self, t: Tensor) -> Tensor:
        a, a_prev = self.alphas_cumprod[t], self.alphas_cumprod[t - 1]
        return (1 - a_prev) / (1 - a) * (1 - a / a_prev)

    def _kl_term(self, x0: Tensor, t: Tensor, e: Tensor | None) -> Tensor:
        """KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) in nats for 0-based t >= 1, with
        p's variance fixed to q's, so the KL is a scaled squared error of the means."""
        a = _expand(self.alphas_cumprod[t], x0)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
        true_mean = self._posterior_mean(x0, x_t, t)
        model_mean = self._posterior_mean(self.estimate_x0(x_t, t, e), x_t, t)
        var = _expand(self._posterior_var(t), x0)
        return ((true_mean - model_mean) ** 2 / (2 * var)).flatten(1).sum(1)

    def _decoder_nll(self, x0: Tensor, e: Tensor | None) -> Tensor:
        """-log p(x_0 | x_1): discretized Gaussian over the data's bins (a density for
        continuous data), centred on the predicted x_0 with variance beta_1."""
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        a = self.alphas_cumprod[0]
        x_1 = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
        mean = self.estimate_x0(x_1, t, e)
        scale = (1 - a).sqrt()
        if self.discrete:
            grid = self.info.grid
            low, high, half_bin = grid.low, grid.high, grid.bin_width / 2
            upper = torch.where(x0 > high - half_bin, torch.inf, (x0 + half_bin - mean) / scale)
            lower = torch.where(x0 < low + half_bin, -torch.inf, (x0 - half_bin - mean) / scale)
            return -_log_normal_mass(lower, upper).flatten(1).sum(1)
        normal = torch.distributions.Normal(mean, scale)
        return -normal.log_prob(x0).flatten(1).sum(1)

    def _prior_kl(self, x0: Tensor) -> Tensor:
        """KL(q(x_T | x_0) || N(0, I))."""
        a = self.alphas_cumprod[-1]
        mean, var = a.sqrt() * x0, (1 - a)
        return (0.5 * (var + mean**2 - 1 - torch.log(var))).flatten(1).sum(1)

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, c: Tensor | None = None, timesteps: int = 0
                       ) -> LogLikelihood:
        """Minus the variational bound L_T + sum_t L_{t-1} + L_0 (Ho et al. 2020, eq. 5)
        in nats per example (of log p(x | c) for a conditional model, whose every term
        is given c). ``timesteps = 0`` sums every one of the T KL terms; otherwise it is
        an unbiased estimate from that many stratified timesteps."""
        if timesteps < 0:
            raise ValueError(f"timesteps must be 0 (all) or positive, got {timesteps}")
        x0 = x.double()
        e = self.encoded_condition(c, x.shape[0])
        total = self._prior_kl(x0) + self._decoder_nll(x0, e)
        n_terms = self.scheduler.config.num_train_timesteps - 1
        if timesteps == 0 or timesteps >= n_terms:
            chosen, weight = torch.arange(1, n_terms + 1), 1.0
            method = f"variational bound (Ho et al. 2020), all {n_terms + 1} timesteps"
        else:
            edges = torch.linspace(1, n_terms + 1, timesteps + 1)
            offsets = torch.rand(timesteps)
            chosen = (edges[:-1] + offsets * (edges[1:] - edges[:-1])).long().clamp(
                1, n_terms)
            weight = n_terms / timesteps
            method = (f"variational bound (Ho et al. 2020), estimated from {timesteps} of "
                      f"{n_terms + 1} timesteps")
        for t in chosen.tolist():
            steps = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
            total = total + weight * self._kl_term(x0, steps, e)
        return LogLikelihood(-total, "bound", method)


def _log_normal_mass(lower: Tensor, upper: Tensor) -> Tensor:
    """log(Phi(upper) - Phi(lower)) for lower < upper, accurate far in either tail."""
    flip = lower > 0  # use the mirror image, where both ends are in the lower tail
    a = torch.where(flip, -upper, lower)
    b = torch.where(flip, -lower, upper)
    log_b = torch.special.log_ndtr(b)
    return log_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_b))


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """Per-example scalars ``(B,)`` (or one scalar) broadcast against ``like``."""
    values = values.to(like.dtype)
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def build_diffusion(ctx, timesteps: Count = 1000, beta_schedule: str = "linear",
                    prediction: Prediction = "epsilon", sampler: Sampler = "dpm-solver++",
                    sampling_steps: Count = 20, guidance: float = 1.0,
                    snap_to_grid: bool = True, conditional: bool | None = None) -> Diffusion:
    """Registered as ``core:diffusion``: the ``denoiser`` network from the recipe or the
    modality. ``timesteps`` and ``beta_schedule`` (``linear``, ``scaled_linear``,
    ``squaredcos_cap_v2``) define the DDPM forward process; ``prediction`` is
    ``epsilon`` or ``v_prediction``; ``sampler`` and ``sampling_steps`` are the
    defaults for ``dgm sample`` (``ddpm``, ``ddim`` or ``dpm-solver++``);
    ``guidance`` is the default classifier-free guidance scale of a conditional model
    (train it with ``condition.dropout`` > 0 for scales other than 1); ``snap_to_grid``
    (discrete data only) pulls the model's estimate of x_0 onto the data's grid where the
    noise is below half a bin, in sampling and in the bound alike. With ``condition.use``
    the denoiser is built with ``condition_dim`` and receives the encoded condition.
    ``conditional`` is hook API 1's switch, read as ``condition.use``."""
    if timesteps < 2:
        raise ValueError(f"timesteps must be at least 2, got {timesteps}")
    if conditional is not None:
        warnings.warn(f"{ctx.recipe.where('family.conditional')}: deprecated; write "
                      "[condition] use = true instead", DeprecationWarning, stacklevel=2)
    condition = ctx.condition_encoder(use=conditional or None)
    extra = {CONDITION_DIM: condition.dim} if condition is not None else {}
    denoiser = ctx.network(DENOISER, data_shape=ctx.info.shape, **extra)
    return Diffusion(denoiser, ctx.info, timesteps=timesteps, beta_schedule=beta_schedule,
                     prediction=prediction, sampler=sampler, sampling_steps=sampling_steps,
                     snap_to_grid=snap_to_grid, condition_encoder=condition,
                     guidance=guidance)
