"""Autoregressive models: p(x) = prod_i p(x_i | x_<i) over the elements of an example in
raster order (spatial positions in order, then channels within a position), fitted by
exact maximum likelihood. The network is any causal map from x to the likelihood's
params (a PixelCNN for images, a causal 1-D conv stack for waveforms)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from dgm.capabilities import CACHED_GENERATION, has
from dgm.conditions import ConditionEncoder
from dgm.contract import AUTOREGRESSIVE, CONDITION_DIM, Batch, Family, Likelihood, LogLikelihood


class Autoregressive(Family):
    """Exact likelihood in one network evaluation; ancestral sampling in one evaluation
    per element.

    ``network`` maps x ``(B, C, *spatial)`` to params ``(B, P*C, *spatial)`` (P is the
    likelihood's ``param_channels``, stacked ``(p c)``) such that the params of an
    element depend only on the elements before it in raster order. With a
    ``condition_encoder`` the network is called ``network(x, e)`` with the encoded
    condition e(c) (each element's params may depend on it everywhere), and the exact
    likelihood is log p(x | c).
    """

    likelihood_kind = "exact"
    roles = (AUTOREGRESSIVE,)

    def __init__(self, network: nn.Module, likelihood: Likelihood,
                 data_shape: tuple[int, ...],
                 condition_encoder: ConditionEncoder | None = None) -> None:
        super().__init__()
        self.condition_encoder = condition_encoder
        self.network = network
        self.likelihood = likelihood
        self.data_shape = tuple(data_shape)
        self.dims = math.prod(self.data_shape)

    def params(self, x: Tensor, e: Tensor | None = None) -> Tensor:
        """The network's params for ``x`` (given the encoded condition ``e``)."""
        return self.network(x) if e is None else self.network(x, e)

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(x) (log p(x | c) when conditional) in nats per example, ``(B,)``."""
        return self.likelihood.log_prob(
            self.params(x, self.encoded_condition(c, x.shape[0])), x)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        nll = -self.log_prob(batch["x"], batch.get("c")).mean()
        return nll, {"nll": nll.detach(),
                     "bits_per_dim": nll.detach() / (self.dims * math.log(2))}

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, c: Tensor | None = None) -> LogLikelihood:
        return LogLikelihood(self.log_prob(x, c), "exact", "autoregressive, exact")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None) -> Tensor:
        """Ancestral sampling from zeros: each element is drawn from the params the
        network gives it once every element before it is filled in. A network with the
        ``cached-generation`` capability (a WaveNet with cached layer states, for 1-D
        data) samples through its ``generate(n, length, likelihood, generator)``
        instead, in one pass (given the encoded condition as its ``condition`` keyword
        when conditional)."""
        parameter = next(self.network.parameters())
        c = self.condition_for_sampling(condition, n, generator, parameter.device)
        e = self.encoded_condition(c, n)
        if has(self.network, CACHED_GENERATION) and len(self.data_shape) == 2:
            extra = {} if e is None else {"condition": e}
            return self.network.generate(n, self.data_shape[1], self.likelihood, generator,
                                         **extra)
        x = torch.zeros((n, *self.data_shape), device=parameter.device, dtype=parameter.dtype)
        channels, spatial = self.data_shape[0], self.data_shape[1:]
        for position in itertools.product(*(range(s) for s in spatial)):
            element = tuple(slice(i, i + 1) for i in position)
            for c in range(channels):
                params = self.params(x, e)
                # Channel c's params, laid out "(p c)" with one channel: p * C + c.
                params = params[(slice(None), slice(c, None, channels), *element)]
                x[(slice(None), slice(c, c + 1), *element)] = self.likelihood.sample(
                    params, generator)
        return x


def build_autoregressive(ctx) -> Autoregressive:
    """Registered as ``core:autoregressive``: the ``autoregressive`` network (from the
    recipe or the modality) gives the likelihood's params of each element from the
    elements before it; trained and evaluated by the exact log-likelihood. With
    ``condition.use`` the network is built with ``condition_dim`` and receives the
    encoded condition."""
    likelihood = ctx.likelihood()
    condition = ctx.condition_encoder()
    extra = {CONDITION_DIM: condition.dim} if condition is not None else {}
    network = ctx.network(AUTOREGRESSIVE, data_shape=ctx.info.shape,
                          param_channels=likelihood.param_channels, **extra)
    return Autoregressive(network, likelihood, ctx.info.shape, condition)
