"""Autoregressive models: p(x) = prod_i p(x_i | x_<i) over the elements of an example in
raster order (spatial positions in order, then channels within a position), fitted by
exact maximum likelihood. The network is any causal map from x to the likelihood's
params (a PixelCNN for images, a causal 1-D conv stack for waveforms)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from dgm.contract import Batch, Family, Likelihood, LogLikelihood


class Autoregressive(Family):
    """Exact likelihood in one network evaluation; ancestral sampling in one evaluation
    per element.

    ``network`` maps x ``(B, C, *spatial)`` to params ``(B, P*C, *spatial)`` (P is the
    likelihood's ``param_channels``, stacked ``(p c)``) such that the params of an
    element depend only on the elements before it in raster order.
    """

    likelihood_kind = "exact"

    def __init__(self, network: nn.Module, likelihood: Likelihood,
                 data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.network = network
        self.likelihood = likelihood
        self.data_shape = tuple(data_shape)
        self.dims = math.prod(self.data_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats per example, ``(B,)``."""
        return self.likelihood.log_prob(self.network(x), x)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        nll = -self.log_prob(batch["x"]).mean()
        return nll, {"nll": nll.detach(),
                     "bits_per_dim": nll.detach() / (self.dims * math.log(2))}

    @torch.no_grad()
    def log_likelihood(self, x: Tensor) -> LogLikelihood:
        return LogLikelihood(self.log_prob(x), "exact", "autoregressive, exact")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None) -> Tensor:
        """Ancestral sampling from zeros: each element is drawn from the params the
        network gives it once every element before it is filled in. A network with a
        ``generate(n, length, likelihood, generator)`` method (a WaveNet with cached
        layer states, for 1-D data) samples through it instead, in one pass."""
        if condition is not None:
            raise ValueError("this autoregressive model is unconditional; it takes no "
                             "condition")
        if hasattr(self.network, "generate") and len(self.data_shape) == 2:
            return self.network.generate(n, self.data_shape[1], self.likelihood, generator)
        parameter = next(self.network.parameters())
        x = torch.zeros((n, *self.data_shape), device=parameter.device, dtype=parameter.dtype)
        channels, spatial = self.data_shape[0], self.data_shape[1:]
        for position in itertools.product(*(range(s) for s in spatial)):
            element = tuple(slice(i, i + 1) for i in position)
            for c in range(channels):
                params = self.network(x)
                # Channel c's params, laid out "(p c)" with one channel: p * C + c.
                params = params[(slice(None), slice(c, None, channels), *element)]
                x[(slice(None), slice(c, c + 1), *element)] = self.likelihood.sample(
                    params, generator)
        return x


def build_autoregressive(ctx) -> Autoregressive:
    """Registered as ``core:autoregressive``: the ``autoregressive`` network (from the
    recipe or the modality) gives the likelihood's params of each element from the
    elements before it; trained and evaluated by the exact log-likelihood."""
    likelihood = ctx.likelihood()
    network = ctx.network("autoregressive", data_shape=ctx.info.shape,
                          param_channels=likelihood.param_channels)
    return Autoregressive(network, likelihood, ctx.info.shape)
