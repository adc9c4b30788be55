"""The core's likelihoods: Gaussian, Bernoulli, and for k-level data the discretized
logistic, its mixture and the categorical."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from dgm import seeded_random
from dgm.contract import Grid, Likelihood


def _sum_per_example(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1)


def _split(params: Tensor, parts: int) -> tuple[Tensor, ...]:
    """Split channel-stacked parameters ``(B, parts*C, ...)`` into ``parts`` tensors."""
    return tuple(rearrange(params, "b (p c) ... -> p b c ...", p=parts).unbind(0))


class Gaussian(Likelihood):
    """Diagonal Gaussian with a learned per-dimension log-scale (mean, log_scale)."""

    param_channels = 2

    def __init__(self, min_log_scale: float = -7.0) -> None:
        self.min_log_scale = min_log_scale

    def _mean_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_scale = _split(params, 2)
        return mean, log_scale.clamp(min=self.min_log_scale)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mean, log_scale = self._mean_log_scale(params)
        z = (x - mean) * torch.exp(-log_scale)
        return _sum_per_example(-0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mean, log_scale = self._mean_log_scale(params)
        noise = seeded_random.randn(mean.shape, generator, mean.device, mean.dtype)
        return mean + torch.exp(log_scale) * noise

    def mean(self, params: Tensor) -> Tensor:
        return self._mean_log_scale(params)[0]


class Bernoulli(Likelihood):
    """Independent Bernoulli per dimension for binary data in {0, 1}; params are logits."""

    param_channels = 1
    discrete = True

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return -_sum_per_example(F.binary_cross_entropy_with_logits(params, x,
                                                                    reduction="none"))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = seeded_random.rand(params.shape, generator, params.device)
        return (u < torch.sigmoid(params)).to(params.dtype)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def __init__(self, grid: Grid | None = None) -> None:
        if grid is not None and (grid.levels, grid.low, grid.high) != (2, 0.0, 1.0):
            raise ValueError(f"the Bernoulli likelihood models binary data, the grid "
                             f"{{0, 1}} (DataInfo(levels=2, value_range=(0.0, 1.0))); the "
                             f"data here is on {grid.describe()}")

    def check_data(self, x: Tensor) -> None:
        if not torch.all((x == 0) | (x == 1)):
            raise ValueError("the Bernoulli likelihood needs binary data in {0, 1}")


def data_grid(grid: Grid | None, levels: int | None) -> Grid:
    """The grid a discrete likelihood works on: the data's (``grid``), with ``levels``
    (a recipe setting) replacing its number of levels; without either, 256 levels on
    [-1, 1]."""
    if levels is not None and levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    if grid is None:
        return Grid(levels or 256)
    return grid if levels is None else Grid(levels, grid.low, grid.high)


class DiscretizedLogistic(Likelihood):
    """Logistic density integrated over the bins of the data's grid (``levels`` evenly
    spaced values on its value range), with the outermost bins taking the tails
    (Salimans et al. 2017, PixelCNN++). Params are (mean, log_scale); ``log_prob`` is a
    probability mass that sums to one over the grid.
    """

    param_channels = 2
    discrete = True

    def __init__(self, levels: int | None = None, min_log_scale: float = -7.0,
                 grid: Grid | None = None) -> None:
        self.grid = data_grid(grid, levels)
        self.levels = self.grid.levels
        self.min_log_scale = min_log_scale
        self.half_bin = self.grid.bin_width / 2

    def _mean_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_scale = _split(params, 2)
        return mean, log_scale.clamp(min=self.min_log_scale)

    def _log_mass(self, mean: Tensor, log_scale: Tensor, x: Tensor) -> Tensor:
        centered = x - mean
        inv_scale = torch.exp(-log_scale)
        upper = inv_scale * (centered + self.half_bin)
        lower = inv_scale * (centered - self.half_bin)
        log_cdf_upper = upper - F.softplus(upper)  # log sigmoid(upper), for the bottom bin
        log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(lower)), for the top bin
        delta = torch.sigmoid(upper) - torch.sigmoid(lower)
        # Where the bin mass underflows, use density * bin width at the centre.
        mid = inv_scale * centered
        log_density_mid = mid - log_scale - 2.0 * F.softplus(mid)
        log_delta = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)),
                                log_density_mid + math.log(2 * self.half_bin))
        edge = self.half_bin / 2
        return torch.where(x < self.grid.low + edge, log_cdf_upper,
                           torch.where(x > self.grid.high - edge, log_sf_lower, log_delta))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mean, log_scale = self._mean_log_scale(params)
        return _sum_per_example(self._log_mass(mean, log_scale, x))

    def to_grid(self, x: Tensor) -> Tensor:
        """Round values to the nearest level of the grid."""
        return self.grid.quantize(x)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mean, log_scale = self._mean_log_scale(params)
        u = seeded_random.rand(mean.shape, generator, mean.device, mean.dtype)
        u = u.clamp(1e-5, 1 - 1e-5)
        return self.to_grid(mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u)))

    def mean(self, params: Tensor) -> Tensor:
        mean, log_scale = self._mean_log_scale(params)
        values = self.grid.values(mean.device)
        log_mass = self._log_mass(mean.unsqueeze(-1), log_scale.unsqueeze(-1), values)
        return (log_mass.exp() * values).sum(-1)

    def check_data(self, x: Tensor) -> None:
        _check_on_grid("discretized logistic", self.grid, x)


def _check_on_grid(name: str, grid: Grid, x: Tensor) -> None:
    if x.min() < grid.low or x.max() > grid.high:
        raise ValueError(f"the {name} likelihood needs data on [{grid.low:g}, "
                         f"{grid.high:g}]; it ranges over [{float(x.min()):g}, "
                         f"{float(x.max()):g}]")
    if not grid.contains(x):
        raise ValueError(f"data does not lie on {grid.describe()}; set likelihood.levels "
                         "to the data's number of levels")


class Categorical(Likelihood):
    """A categorical over the values of the data's grid per element, with no smoothness
    assumption (k-level pixels, mu-law audio). Params are logits, ``levels`` per data
    channel, stacked as ``(levels C)`` on dimension 1."""

    discrete = True

    def __init__(self, levels: int | None = None, grid: Grid | None = None) -> None:
        self.grid = data_grid(grid, levels)
        self.levels = self.grid.levels
        self.param_channels = self.levels

    def logits(self, params: Tensor) -> Tensor:
        """The logits with the levels last: ``(B, C, ..., levels)``."""
        return rearrange(params, "b (p c) ... -> b c ... p", p=self.levels)

    def to_index(self, x: Tensor) -> Tensor:
        """The index of the nearest level for each value of ``x``."""
        return self.grid.index(x)

    def to_value(self, index: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """The level at each index, exactly as the grid spells it."""
        return self.grid.values(index.device, dtype)[index]

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        log_p = F.log_softmax(self.logits(params), dim=-1)
        index = self.to_index(x).unsqueeze(-1)
        return _sum_per_example(log_p.gather(-1, index).squeeze(-1))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Inverse-CDF sampling: one uniform per element, whatever the number of levels."""
        cdf = torch.softmax(self.logits(params).float(), dim=-1).cumsum(-1)
        u = seeded_random.rand(cdf.shape[:-1], generator, cdf.device)
        index = torch.searchsorted(cdf, u.unsqueeze(-1), right=True).squeeze(-1)
        return self.to_value(index.clamp(max=self.levels - 1), params.dtype)

    def mean(self, params: Tensor) -> Tensor:
        probs = torch.softmax(self.logits(params), dim=-1)
        return probs @ self.grid.values(params.device, probs.dtype)

    def check_data(self, x: Tensor) -> None:
        _check_on_grid("categorical", self.grid, x)


class DiscretizedLogisticMixture(Likelihood):
    """A mixture of ``components`` discretized logistics per element (Salimans et al.
    2017, PixelCNN++, with independent channels) on the data's grid; the outermost bins
    take the tails. Params are (mixture logits, means,
    log-scales), ``components`` each, stacked as ``(3K C)`` on dimension 1."""

    discrete = True

    def __init__(self, levels: int | None = None, components: int = 5,
                 min_log_scale: float = -7.0, grid: Grid | None = None) -> None:
        if components < 1:
            raise ValueError(f"components must be at least 1, got {components}")
        self.component = DiscretizedLogistic(levels, min_log_scale, grid)
        self.grid = self.component.grid
        self.levels = self.grid.levels
        self.components = components
        self.param_channels = 3 * components

    def _parts(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log mixture weights, means and log-scales, each ``(B, C, ..., K)``."""
        parts = rearrange(params, "b (p c) ... -> b c ... p", p=self.param_channels)
        logits, mean, log_scale = parts.split(self.components, dim=-1)
        return (F.log_softmax(logits, dim=-1), mean,
                log_scale.clamp(min=self.component.min_log_scale))

    def _log_mass(self, params: Tensor, x: Tensor) -> Tensor:
        """log P(x) per element; ``x`` broadcasts against ``(B, C, ..., 1)``."""
        log_weight, mean, log_scale = self._parts(params)
        component_mass = self.component._log_mass(mean, log_scale, x)
        return torch.logsumexp(log_weight + component_mass, dim=-1)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return _sum_per_example(self._log_mass(params, x.unsqueeze(-1)))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        log_weight, mean, log_scale = self._parts(params)
        cdf = log_weight.float().exp().cumsum(-1)
        u = seeded_random.rand(cdf.shape[:-1], generator, cdf.device)
        k = torch.searchsorted(cdf, u.unsqueeze(-1), right=True).clamp(max=self.components - 1)
        mean, log_scale = mean.gather(-1, k).squeeze(-1), log_scale.gather(-1, k).squeeze(-1)
        v = seeded_random.rand(mean.shape, generator, mean.device, mean.dtype)
        v = v.clamp(1e-5, 1 - 1e-5)
        noise = torch.log(v) - torch.log1p(-v)
        return self.component.to_grid(mean + torch.exp(log_scale) * noise)

    def mean(self, params: Tensor) -> Tensor:
        values = self.grid.values(params.device, params.dtype)
        mass = self._log_mass(params.unsqueeze(-1), values.view(-1, 1)).exp()
        return (mass * values).sum(-1)

    def check_data(self, x: Tensor) -> None:
        self.component.check_data(x)
