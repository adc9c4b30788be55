"""Random draws from a seeded ``torch.Generator`` for tensors on any device.

torch refuses a CPU generator for a CUDA tensor. Sampling commands seed a CPU generator,
so these helpers draw on the generator's device and move the result: a seed gives the
same noise whether the model runs on CPU or GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _draw_device(generator: torch.Generator | None,
                 device: torch.device | str | None) -> torch.device | str | None:
    return device if generator is None else generator.device


def randn(shape: Sequence[int], generator: torch.Generator | None = None,
          device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn from ``generator``."""
    x = torch.randn(tuple(shape), generator=generator,
                    device=_draw_device(generator, device), dtype=dtype)
    return x.to(device) if device is not None else x


def rand(shape: Sequence[int], generator: torch.Generator | None = None,
         device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> Tensor:
    """Uniform [0, 1) noise of ``shape`` on ``device``, drawn from ``generator``."""
    x = torch.rand(tuple(shape), generator=generator,
                   device=_draw_device(generator, device), dtype=dtype)
    return x.to(device) if device is not None else x


def randint(high: int, shape: Sequence[int], generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> Tensor:
    """Integers in [0, high) of ``shape`` on ``device``, drawn from ``generator``."""
    x = torch.randint(0, high, tuple(shape), generator=generator,
                      device=_draw_device(generator, device))
    return x.to(device) if device is not None else x
