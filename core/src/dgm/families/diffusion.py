"""Denoising diffusion (Ho et al. 2020): any denoiser network paired with diffusers'
schedulers. Training uses the DDPM forward process; sampling uses DDPM, DDIM or
DPM-Solver++ at any number of steps; evaluation reports the variational bound on the
negative log-likelihood with a discretized decoder, so diffusion joins the likelihood
table next to exact families."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm import seeded_random
from dgm.contract import Batch, DataInfo, Family, LogLikelihood
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
    (x_t, t, condition) and is trained by the mean squared error (Ho et al.'s L_simple).

    The denoiser is any module called as ``denoiser(x_t, t, class_labels)`` returning a
    tensor shaped like ``x_t``.
    """

    likelihood_kind = "bound"

    def __init__(self, denoiser: nn.Module, info: DataInfo, timesteps: int = 1000,
                 beta_schedule: str = "linear", prediction: Prediction = "epsilon",
                 sampler: Sampler = "dpm-solver++", sampling_steps: int = 20,
                 conditional: bool = False, snap_to_grid: bool = True) -> None:
        from diffusers import DDPMScheduler  # imported here: it takes seconds

        super().__init__()
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction must be 'epsilon' or 'v_prediction', got "
                             f"{prediction!r}")
        if conditional and not info.classes:
            raise ValueError("conditional = true needs a data set with class labels; "
                             f"{info.modality} data here has none")
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
        self.conditional = conditional
        self.discrete = info.levels is not None
        self.snap_to_grid = snap_to_grid and self.discrete
        alphas_cumprod = self.scheduler.alphas_cumprod.double()
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)

    # ------------------------------------------------------------------ training
    def _labels(self, batch: Batch) -> Tensor | None:
        return batch["label"] if self.conditional else None

    def predict(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The denoiser's raw output (eps or v) at integer timesteps ``t``."""
        return self.denoiser(x_t, t, labels)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        x0 = batch["x"]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],),
                          device=x0.device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        target = noise if self.prediction == "epsilon" else \
            self.scheduler.get_velocity(x0, noise, t)
        loss = F.mse_loss(self.predict(x_t, t, self._labels(batch)).float(), target.float())
        return loss, {"mse": loss.detach()}

    # ------------------------------------------------------------------ sampling
    def _random_labels(self, n: int, generator: torch.Generator | None,
                       device: torch.device) -> Tensor:
        return seeded_random.randint(len(self.info.classes), (n,), generator, device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None, sampler: str | None = None,
               steps: int | None = None, size: tuple[int, int] | None = None) -> Tensor:
        """``n`` samples with ``sampler`` ("ddpm", "ddim" or "dpm-solver++") at ``steps``
        network evaluations (defaults: the recipe's). Discrete data is snapped to its
        grid. ``condition`` holds class indices (random classes when it is None).
        ``size`` = (height, width) samples at another size than the data's, where the
        denoiser is fully convolutional (see :mod:`dgm.sizes`)."""
        shape = sample_shape(self.info.shape, size, self.denoiser, "denoiser")
        device = self.alphas_cumprod.device
        scheduler = make_sampler(sampler or self.sampler, self.scheduler, clip=self.discrete)
        steps = steps or self.sampling_steps
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        scheduler.set_timesteps(min(steps, self.scheduler.config.num_train_timesteps),
                                device=device)
        labels = None
        if self.conditional:
            labels = (condition.to(device) if condition is not None
                      else self._random_labels(n, generator, device))
        x = seeded_random.randn((n, *shape), generator, device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(x, t)
            steps_t = t.expand(n).to(device)
            x0 = self.estimate_x0(model_in, steps_t, labels)
            if self.discrete:  # every sampler, not only DDPM's clip_sample, stays in range
                x0 = x0.clamp(*self.info.value_range)
            out = self._as_prediction(model_in, steps_t, x0)
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        return self._to_data(x)

    def _to_data(self, x: Tensor) -> Tensor:
        if not self.discrete:
            return x
        low, high = self.info.value_range
        step = (high - low) / (self.info.levels - 1)
        return (torch.round((x.clamp(low, high) - low) / step) * step + low)

    # ------------------------------------------------------------------ the model's x_0
    def estimate_x0(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The reverse process's estimate of x_0 from x_t: the denoiser's, pulled onto the
        data grid where the noise is below half a bin (``snap_to_grid``)."""
        a = _expand(self.alphas_cumprod[t], x_t)
        out = self.predict(x_t.float(), t, labels).to(x_t.dtype)
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
        low, high = self.info.value_range
        step = (high - low) / (self.info.levels - 1)
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

    def _kl_term(self, x0: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
        """KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) in nats for 0-based t >= 1, with
        p's variance fixed to q's, so the KL is a scaled squared error of the means."""
        a = _expand(self.alphas_cumprod[t], x0)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
        true_mean = self._posterior_mean(x0, x_t, t)
        model_mean = self._posterior_mean(self.estimate_x0(x_t, t, labels), x_t, t)
        var = _expand(self._posterior_var(t), x0)
        return ((true_mean - model_mean) ** 2 / (2 * var)).flatten(1).sum(1)

    def _decoder_nll(self, x0: Tensor, labels: Tensor | None) -> Tensor:
        """-log p(x_0 | x_1): discretized Gaussian over the data's bins (a density for
        continuous data), centred on the predicted x_0 with variance beta_1."""
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        a = self.alphas_cumprod[0]
        x_1 = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
        mean = self.estimate_x0(x_1, t, labels)
        scale = (1 - a).sqrt()
        if self.discrete:
            low, high = self.info.value_range
            half_bin = (high - low) / (self.info.levels - 1) / 2
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
    def log_likelihood(self, x: Tensor, timesteps: int = 0, label: Tensor | None = None
                       ) -> LogLikelihood:
        """Minus the variational bound L_T + sum_t L_{t-1} + L_0 (Ho et al. 2020, eq. 5)
        in nats per example. ``timesteps = 0`` sums every one of the T KL terms;
        otherwise it is an unbiased estimate from that many stratified timesteps."""
        if timesteps < 0:
            raise ValueError(f"timesteps must be 0 (all) or positive, got {timesteps}")
        x0 = x.double()
        labels = label if self.conditional else None
        if self.conditional and labels is None:
            raise ValueError("a conditional diffusion model needs the labels to evaluate "
                             "a likelihood")
        total = self._prior_kl(x0) + self._decoder_nll(x0, labels)
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
            total = total + weight * self._kl_term(x0, steps, labels)
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


def build_diffusion(ctx, timesteps: int = 1000, beta_schedule: str = "linear",
                    prediction: Prediction = "epsilon", sampler: Sampler = "dpm-solver++",
                    sampling_steps: int = 20, conditional: bool = False,
                    snap_to_grid: bool = True) -> Diffusion:
    """Registered as ``core:diffusion``: the ``denoiser`` network from the recipe or the
    modality. ``timesteps`` and ``beta_schedule`` (``linear``, ``scaled_linear``,
    ``squaredcos_cap_v2``) define the DDPM forward process; ``prediction`` is
    ``epsilon`` or ``v_prediction``; ``sampler`` and ``sampling_steps`` are the
    defaults for ``dgm sample`` (``ddpm``, ``ddim`` or ``dpm-solver++``);
    ``conditional`` feeds the data's class labels to the denoiser; ``snap_to_grid``
    (discrete data only) pulls the model's estimate of x_0 onto the data's grid where the
    noise is below half a bin, in sampling and in the bound alike."""
    if timesteps < 2:
        raise ValueError(f"timesteps must be at least 2, got {timesteps}")
    num_classes = len(ctx.info.classes) if conditional else None
    denoiser = ctx.network("denoiser", data_shape=ctx.info.shape, num_classes=num_classes)
    return Diffusion(denoiser, ctx.info, timesteps=timesteps, beta_schedule=beta_schedule,
                     prediction=prediction, sampler=sampler, sampling_steps=sampling_steps,
                     conditional=conditional, snap_to_grid=snap_to_grid)
