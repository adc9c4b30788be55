"""Random draws from a seeded ``torch.Generator`` for tensors on any device.

torch refuses a CPU generator for a CUDA tensor. Sampling commands seed a CPU generator,
so these helpers draw on the generator's device and move the result: a seed gives the
same noise whether the model runs on CPU or GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def _draw(sample: Callable[..., Tensor], shape: Sequence[int],
          generator: torch.Generator | None, device: torch.device | str | None,
          **kwargs: object) -> Tensor:
    """``sample(shape, ...)`` drawn on the generator's device, then moved to ``device``."""
    where = device if generator is None else generator.device
    x = sample(tuple(shape), generator=generator, device=where, **kwargs)
    return x.to(device) if device is not None else x


def randn(shape: Sequence[int], generator: torch.Generator | None = None,
          device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn from ``generator``."""
    return _draw(torch.randn, shape, generator, device, dtype=dtype)


def rand(shape: Sequence[int], generator: torch.Generator | None = None,
         device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> Tensor:
    """Uniform [0, 1) noise of ``shape`` on ``device``, drawn from ``generator``."""
    return _draw(torch.rand, shape, generator, device, dtype=dtype)


def randint(high: int, shape: Sequence[int], generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> Tensor:
    """Integers in [0, high) of ``shape`` on ``device``, drawn from ``generator``."""
    return _draw(lambda size, **kw: torch.randint(0, high, size, **kw), shape, generator,
                 device)
