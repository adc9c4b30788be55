"""Normalizing flow in the style of RealNVP (Dinh et al. 2017) and Glow (Kingma &
Dhariwal 2018): multi-scale squeeze levels of actnorm, invertible 1x1 convolution and
affine coupling, with half the channels factored out to N(0, I) after every level.

Discrete data is dequantized (uniform noise over each bin, or a learned conditional
flow over the bin as in Flow++, Ho et al. 2019), so training and evaluation use a lower
bound on the probability mass of the grid values. Every layer works on data shaped
``(C, L)`` or ``(C, H, W)``; the coupling networks come from the modality.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dgm import seeded_random
from dgm.conditions import ConditionEncoder, broadcast
from dgm.contract import COUPLING, Batch, Family, Grid, LogLikelihood
from dgm.settings import Count

CouplingNetworkFactory = Callable[[int, int], nn.Module]
"""Builds a coupling network from ``(in_channels, out_channels)``."""

SQUEEZE_PATTERNS = {
    1: ("b c (l p) -> b (c p) l", "b (c p) l -> b c (l p)"),
    2: ("b c (h p) (w q) -> b (c p q) h w", "b (c p q) h w -> b c (h p) (w q)"),
}


def _spatial_size(x: Tensor) -> int:
    return math.prod(x.shape[2:])


def _per_channel(t: Tensor, x: Tensor) -> Tensor:
    """View a ``(C,)`` tensor so it broadcasts over ``x`` shaped ``(B, C, ...)``."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


# -------------------------------------------------------------------------------------
# Layers: forward(x) -> (y, log|det dy/dx| per example), inverse(y) -> x
# -------------------------------------------------------------------------------------


class Squeeze(nn.Module):
    """Space to channels: each 2 (or 2x2) block of positions becomes channels."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        if spatial_dims not in SQUEEZE_PATTERNS:
            raise ValueError(f"squeeze works on 1 or 2 spatial dimensions, not {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.forward_pattern, self.inverse_pattern = SQUEEZE_PATTERNS[spatial_dims]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = rearrange(x, self.forward_pattern, **self._factors())
        return y, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return rearrange(y, self.inverse_pattern, **self._factors())

    def _factors(self) -> dict[str, int]:
        return {"p": 2} if self.spatial_dims == 1 else {"p": 2, "q": 2}


class ActNorm(nn.Module):
    """Per-channel affine map y = (x + bias) * exp(log_scale), initialised from the first
    batch it sees so its output has zero mean and unit variance per channel. The
    ``initialized`` buffer is saved with the weights, so loaded weights are kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and scale from the statistics of ``x`` (averaged over processes when
        training is distributed, so every copy starts alike)."""
        values = x.transpose(0, 1).flatten(1)
        moments = torch.stack([values.mean(1), (values**2).mean(1)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(moments)
            moments /= torch.distributed.get_world_size()
        mean, mean_square = moments
        std = (mean_square - mean**2).clamp(min=0).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.initialized:
            self.initialize(x)
        y = (x + _per_channel(self.bias, x)) * _per_channel(self.log_scale.exp(), x)
        log_det = self.log_scale.sum() * _spatial_size(x)
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * _per_channel((-self.log_scale).exp(), y) - _per_channel(self.bias, y)


class InvertibleConv1x1(nn.Module):
    """A learned invertible channel mixing W = P L (U + diag(sign * exp(log_s))), the LU
    parametrisation of Glow: log|det W| is sum(log_s), and W starts as a random
    rotation. P and the signs are fixed buffers (saved with the weights)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels))[0]
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = upper.diagonal()
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign", diagonal.sign())
        self.register_buffer("strict_lower_mask", torch.ones(channels, channels).tril(-1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(upper.triu(1))
        self.log_s = nn.Parameter(diagonal.abs().log())

    def weight(self) -> Tensor:
        """The ``(C, C)`` mixing matrix."""
        eye = torch.eye(self.log_s.shape[0], dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower * self.strict_lower_mask + eye
        upper = self.upper * self.strict_lower_mask.T + torch.diag(self.sign * self.log_s.exp())
        return self.permutation @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.einsum("ij,bj...->bi...", self.weight(), x)
        log_det = self.log_s.sum() * _spatial_size(x)
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return torch.einsum("ij,bj...->bi...", torch.linalg.inv(self.weight()), y)


class AffineCoupling(nn.Module):
    """The first ``channels // 2`` channels pass unchanged and, through ``network`` (and
    an optional condition concatenated on the channels), set a shift and a log-scale for
    the rest: y_b = x_b * exp(log_scale) + shift. The log-scale is soft-clamped to
    (-scale_bound, scale_bound) with a tanh for stability; a network whose output starts
    at zero makes the coupling start as the identity."""

    def __init__(self, channels: int, network: nn.Module, scale_bound: float = 2.0) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"affine coupling needs at least 2 channels, got {channels}")
        self.kept = channels // 2
        self.network = network
        self.scale_bound = scale_bound

    def _shift_log_scale(self, kept: Tensor, condition: Tensor | None) -> tuple[Tensor, Tensor]:
        inputs = kept if condition is None else torch.cat([kept, condition], 1)
        shift, raw_scale = self.network(inputs).chunk(2, dim=1)
        return shift, self.scale_bound * torch.tanh(raw_scale / self.scale_bound)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept, changed = x[:, :self.kept], x[:, self.kept:]
        shift, log_scale = self._shift_log_scale(kept, condition)
        y = torch.cat([kept, changed * log_scale.exp() + shift], 1)
        return y, log_scale.flatten(1).sum(1)

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        kept, changed = y[:, :self.kept], y[:, self.kept:]
        shift, log_scale = self._shift_log_scale(kept, condition)
        return torch.cat([kept, (changed - shift) * (-log_scale).exp()], 1)


class FlowStep(nn.Module):
    """One Glow step: actnorm (optional), invertible 1x1 convolution, affine coupling."""

    def __init__(self, channels: int, network: nn.Module, scale_bound: float = 2.0,
                 actnorm: bool = True) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels) if actnorm else None
        self.mix = InvertibleConv1x1(channels)
        self.coupling = AffineCoupling(channels, network, scale_bound)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        if self.actnorm is not None:
            x, log_det = self.actnorm(x)
        x, mix_log_det = self.mix(x)
        x, coupling_log_det = self.coupling(x, condition)
        return x, log_det + mix_log_det + coupling_log_det

    def inverse(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        x = self.mix.inverse(self.coupling.inverse(y, condition))
        return x if self.actnorm is None else self.actnorm.inverse(x)


def coupling_channels(channels: int) -> tuple[int, int]:
    """Input and output channels of the network of a coupling over ``channels``."""
    kept = channels // 2
    return kept, 2 * (channels - kept)


class MultiScaleFlow(nn.Module):
    """``scales`` levels of: squeeze, ``steps_per_scale`` flow steps, then (except after
    the last level) half the channels leave as a latent. ``forward`` maps data to the
    list of latents and the log-determinant; ``inverse`` maps latents back to data.
    With ``condition_dim`` every coupling network also sees an encoded condition
    ``(B, condition_dim)``, broadcast over the positions of its level."""

    def __init__(self, data_shape: tuple[int, ...], make_network: CouplingNetworkFactory,
                 scales: int = 2, steps_per_scale: int = 4, scale_bound: float = 2.0,
                 condition_dim: int = 0) -> None:
        super().__init__()
        check_flow_shape(data_shape, scales)
        if steps_per_scale < 1:
            raise ValueError(f"steps_per_scale must be at least 1, got {steps_per_scale}")
        spatial_dims = len(data_shape) - 1
        self.squeeze = Squeeze(spatial_dims)
        self.levels = nn.ModuleList()
        self.latent_shapes: list[tuple[int, ...]] = []
        channels, spatial = data_shape[0], list(data_shape[1:])
        for level in range(scales):
            channels *= 2**spatial_dims
            spatial = [s // 2 for s in spatial]
            network_in, network_out = coupling_channels(channels)
            self.levels.append(nn.ModuleList(
                FlowStep(channels, make_network(network_in + condition_dim, network_out),
                         scale_bound)
                for _ in range(steps_per_scale)))
            if level < scales - 1:
                leaving = channels // 2
                self.latent_shapes.append((leaving, *spatial))
                channels -= leaving
        self.latent_shapes.append((channels, *spatial))

    def forward(self, x: Tensor, e: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        log_det = x.new_zeros(x.shape[0])
        latents = []
        for level, steps in enumerate(self.levels):
            x, _ = self.squeeze(x)
            condition = None if e is None else broadcast(e, x)
            for step in steps:
                x, step_log_det = step(x, condition)
                log_det = log_det + step_log_det
            if level < len(self.levels) - 1:
                leaving = self.latent_shapes[level][0]
                latents.append(x[:, :leaving])
                x = x[:, leaving:]
        latents.append(x)
        return latents, log_det

    def inverse(self, latents: list[Tensor], e: Tensor | None = None) -> Tensor:
        x = latents[-1]
        for level in reversed(range(len(self.levels))):
            if level < len(self.levels) - 1:
                x = torch.cat([latents[level], x], 1)
            condition = None if e is None else broadcast(e, x)
            for step in reversed(self.levels[level]):
                x = step.inverse(x, condition)
            x = self.squeeze.inverse(x)
        return x

    def log_prob(self, x: Tensor, e: Tensor | None = None) -> Tensor:
        """log p(x) (log p(x | c) given the encoded condition ``e``) in nats per example
        under N(0, I) latents."""
        latents, log_det = self(x, e)
        return sum(_standard_normal_log_prob(z) for z in latents) + log_det


def check_flow_shape(data_shape: tuple[int, ...], scales: int) -> None:
    """Raise ``ValueError`` unless a ``scales``-level flow can squeeze ``data_shape``."""
    if scales < 1:
        raise ValueError(f"scales must be at least 1, got {scales}")
    if len(data_shape) not in (2, 3):
        raise ValueError(f"the flow needs data shaped (C, L) or (C, H, W); got {data_shape}")
    factor = 2**scales
    if any(size % factor for size in data_shape[1:]):
        raise ValueError(f"a flow with {scales} scales squeezes {scales} times, so every "
                         f"spatial size must be divisible by {factor}; data is "
                         f"{'x'.join(map(str, data_shape[1:]))}: use fewer scales")


# -------------------------------------------------------------------------------------
# Dequantization
# -------------------------------------------------------------------------------------


class VariationalDequantizer(nn.Module):
    """q(u | x) over the unit cube (Flow++): Gaussian noise through conditional flow
    steps (the squeezed x is concatenated to every coupling network's input), then a
    sigmoid. ``sample`` returns u and log q(u | x) in nats per example."""

    def __init__(self, data_shape: tuple[int, ...], make_network: CouplingNetworkFactory,
                 steps: int = 4, scale_bound: float = 2.0) -> None:
        super().__init__()
        self.squeeze = Squeeze(len(data_shape) - 1)
        channels = data_shape[0] * 2 ** (len(data_shape) - 1)
        network_in, network_out = coupling_channels(channels)
        self.steps = nn.ModuleList(
            FlowStep(channels, make_network(network_in + channels, network_out), scale_bound,
                     actnorm=False)
            for _ in range(steps))

    def sample(self, x: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """u ~ q(u | x) shaped like ``x`` and log q(u | x); ``noise`` (shaped like the
        squeezed ``x``) replaces the Gaussian draw."""
        condition, _ = self.squeeze(x)
        noise = torch.randn_like(condition) if noise is None else noise
        log_q = _standard_normal_log_prob(noise)
        v = noise
        for step in self.steps:
            v, log_det = step(v, condition)
            log_q = log_q - log_det
        log_q = log_q + (F.softplus(-v) + F.softplus(v)).flatten(1).sum(1)
        return self.squeeze.inverse(torch.sigmoid(v)), log_q


# -------------------------------------------------------------------------------------
# The family
# -------------------------------------------------------------------------------------


class Flow(Family):
    """A multi-scale normalizing flow with N(0, I) latents, fitted by maximum likelihood.

    For continuous data (``levels`` None) log p(x) is exact. For data on a grid of
    ``levels`` values (``grid``, default [-1, 1]; bin width h) the flow models
    y = x + h (u - 1/2) with u in [0, 1)^D, and log P(x) >= E_q[log p(y) - log q(u|x)]
    + D log h (uniform dequantization: q = 1). Samples of discrete data are rounded to the
    nearest grid value and clamped to [-1, 1], which is the bin the continuous sample
    falls in. The loss is the negative bound in nats per dimension; ``nll_nats`` logs it
    per example. With a ``condition_encoder`` every coupling is conditioned on e(c) and
    the same statements hold for log p(x | c); the dequantizer stays q(u | x), which
    keeps the bound valid.
    """

    roles = (COUPLING,)

    def __init__(self, flow: MultiScaleFlow, data_shape: tuple[int, ...],
                 levels: int | None = None, dequantizer: VariationalDequantizer | None = None,
                 temperature: float = 1.0,
                 condition_encoder: ConditionEncoder | None = None,
                 grid: Grid | None = None) -> None:
        super().__init__()
        self.grid = grid if grid is not None else (Grid(levels) if levels else None)
        levels = self.grid.levels if self.grid is not None else None
        self.condition_encoder = condition_encoder
        self.flow = flow
        self.data_shape = tuple(data_shape)
        self.levels = levels
        self.dequantizer = dequantizer
        self.temperature = temperature
        self.likelihood_kind = "bound" if levels else "exact"
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def dims(self) -> int:
        return math.prod(self.data_shape)

    @property
    def bin_width(self) -> float:
        """h, the spacing of the grid values (discrete data only)."""
        if self.grid is None:
            raise ValueError("continuous data has no bins")
        return self.grid.bin_width

    def log_prob_bound(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """One-draw estimate of the log-likelihood per example in nats: the dequantization
        bound for discrete data (log p(y) - log q(u|x) + D log h), log p(x) otherwise."""
        e = self.encoded_condition(c, x.shape[0])
        if not self.levels:
            return self.flow.log_prob(x, e)
        if self.dequantizer is None:
            u, log_q = torch.rand_like(x), x.new_zeros(x.shape[0])
        else:
            u, log_q = self.dequantizer.sample(x)
        h = self.bin_width
        return self.flow.log_prob(x + h * (u - 0.5), e) - log_q + self.dims * math.log(h)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        log_p = self.log_prob_bound(batch["x"], batch.get("c"))
        nll = -log_p.mean()
        return nll / self.dims, {"nll_nats": nll.detach(),
                                 "bits_per_dim": nll.detach() / (self.dims * math.log(2))}

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, c: Tensor | None = None, k: Count = 8
                       ) -> LogLikelihood:
        """Exact log p(x) for continuous data. For discrete data, the log of the mean of
        ``k`` importance weights p(y_i) / q(u_i|x) times h^D: a lower bound on log P(x)
        in expectation, tighter as ``k`` grows. Given ``c`` for a conditional flow."""
        if not self.levels:
            return LogLikelihood(self.log_prob_bound(x, c), "exact", "change of variables")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        draws = torch.stack([self.log_prob_bound(x, c) for _ in range(k)])
        values = torch.logsumexp(draws, 0) - math.log(k)
        kind = "uniform" if self.dequantizer is None else "variational"
        return LogLikelihood(values, "bound",
                             f"{kind} dequantization, importance-weighted, k={k}")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None) -> Tensor:
        device = self._anchor.device
        dtype = next(self.flow.parameters()).dtype
        latents = [self.temperature * seeded_random.randn((n, *shape), generator, device,
                                                          dtype)
                   for shape in self.flow.latent_shapes]
        c = self.condition_for_sampling(condition, n, generator, device)
        e = self.encoded_condition(c, n)
        y = self.flow.inverse(latents, e)
        if self.grid is None:
            return y
        return self.grid.quantize(y)


def build_flow(ctx, scales: int = 2, steps_per_scale: int = 4,
               dequantization: Literal["uniform", "variational"] = "uniform",
               dequantizer_steps: int = 4, scale_bound: float = 2.0,
               temperature: float = 1.0) -> Flow:
    """Registered as ``core:flow``: one ``coupling`` network per coupling layer from the
    recipe or the modality, built with ``in_channels`` and ``out_channels``. ``scales``
    squeeze levels of ``steps_per_scale`` steps each (every spatial size must be
    divisible by 2**scales); ``dequantization`` is ``"uniform"`` or ``"variational"``
    (a learned q(u|x) of ``dequantizer_steps`` conditional steps; discrete data only);
    ``scale_bound`` bounds each coupling's log-scale; ``temperature`` scales the latent
    noise when sampling. With ``condition.use`` each coupling network has
    ``condition.dim`` more input channels (the encoded condition)."""
    if dequantization not in ("uniform", "variational"):
        raise ValueError(f"dequantization must be 'uniform' or 'variational', got "
                         f"{dequantization!r}")
    if temperature <= 0 or scale_bound <= 0:
        raise ValueError("temperature and scale_bound must be positive")
    shape = tuple(ctx.info.shape)
    check_flow_shape(shape, scales)

    def make_network(in_channels: int, out_channels: int) -> nn.Module:
        return ctx.network(COUPLING, in_channels=in_channels, out_channels=out_channels)

    condition = ctx.condition_encoder()
    flow = MultiScaleFlow(shape, make_network, scales, steps_per_scale, scale_bound,
                          condition_dim=condition.dim if condition is not None else 0)
    dequantizer = None
    if dequantization == "variational" and ctx.info.levels:
        if dequantizer_steps < 1:
            raise ValueError(f"dequantizer_steps must be at least 1, got {dequantizer_steps}")
        dequantizer = VariationalDequantizer(shape, make_network, dequantizer_steps,
                                             scale_bound)
    return Flow(flow, shape, ctx.info.levels, dequantizer, temperature, condition,
                grid=ctx.info.grid)
