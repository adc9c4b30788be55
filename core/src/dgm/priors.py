"""The core's priors over latents."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dgm import seeded_random
from dgm.contract import Prior


class StandardNormal(Prior):
    """N(0, I) over latents of a fixed per-example shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return seeded_random.randn((n, *self.shape), generator, self._anchor.device)

    def log_prob(self, z: Tensor) -> Tensor:
        return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
