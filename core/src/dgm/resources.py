"""Resource guards: how much memory a family will need, worked out before any of it is
allocated, and refused when it is beyond what the machine has.

The family is built once on PyTorch's ``meta`` device, where tensors have shapes and no
storage, so a recipe asking for 60000x60000 layers or a billion latent dimensions is
measured in milliseconds instead of being allocated until the kernel kills the process.
Training memory is counted as the weights, their gradients, the optimizer's state (AdamW's
and Adam's two moments, SGD's momentum buffer) and the
EMA copy, plus the tensors autograd keeps for one batch's backward pass (measured by a
meta forward pass where the family's code allows one)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dgm.errors import RecipeError

MEMORY_SHARE = 0.9
"""Of the training device's memory, the share a run may plan to use when
``train.max_memory_gb`` is 0 (its default)."""

GB = 1e9


@dataclass
class MemoryEstimate:
    """What a family needs, in bytes: weights alone, and for training."""

    parameters: int
    weight_bytes: int
    training_bytes: int
    activation_bytes: int | None
    """Tensors saved for backward over one batch; None where a meta pass could not run."""


def device_memory(device: torch.device | None = None) -> int:
    """Bytes of memory on ``device``: the GPU's own, else the machine's RAM."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    import psutil  # accelerate's own dependency

    return psutil.virtual_memory().total


def memory_limit(max_memory_gb: float, device: torch.device | None = None) -> int:
    """The bytes a run may plan to use: ``max_memory_gb`` when set, else
    :data:`MEMORY_SHARE` of the device's memory."""
    if max_memory_gb > 0:
        return int(max_memory_gb * GB)
    return int(MEMORY_SHARE * device_memory(device))


def on_meta(build: Callable[[], nn.Module]) -> nn.Module | None:
    """``build()`` with every tensor on the meta device, else with only the parameters
    there (accelerate's ``init_empty_weights``: buffers stay real, so schedulers and
    tables that read values build as usual); None when neither works."""
    from accelerate import init_empty_weights  # parameters on meta, buffers real

    for place in (lambda: torch.device("meta"), init_empty_weights):
        try:  # quietly: weights loaded into meta parameters (a latent model's autoencoder)
            with place(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return build()
        except RecipeError:
            raise
        except Exception:  # noqa: BLE001 - factory code that needs real values, or memory
            continue
    return None


def activation_bytes(module: nn.Module, batch: dict[str, torch.Tensor]) -> int | None:
    """Bytes autograd saves for backward in one forward pass of ``module`` (a meta
    module) over ``batch``; None when the forward pass cannot run on meta tensors."""
    total = 0

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    meta_batch = {k: v.to("meta") if isinstance(v, torch.Tensor) else v
                  for k, v in batch.items()}
    try:
        with torch.device("meta"), torch.autograd.graph.saved_tensors_hooks(keep, keep):
            module.train()
            module(meta_batch)
    except Exception:  # noqa: BLE001 - random draws with a CPU generator, .item(), ...
        return None
    return total


def estimate(family: nn.Module, batch: dict[str, torch.Tensor] | None = None,
             ema: bool = False, optimizer_states: int = 2) -> MemoryEstimate:
    """Memory for ``family`` (built on meta, see :func:`on_meta`) and, with ``batch``, for
    training it on batches like that one with an optimizer that keeps
    ``optimizer_states`` tensors per parameter."""
    params = [p for p in family.parameters()]
    n = sum(p.numel() for p in params)
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    activations = activation_bytes(family, batch) if batch is not None else None
    training = (weights + (1 + optimizer_states) * trainable + (weights if ema else 0)
                + (activations or 0))
    return MemoryEstimate(n, weights, training, activations)


def check_fits(needed: int, limit: int, what: str, where: str, advice: str) -> None:
    """A :class:`RecipeError` when ``needed`` bytes exceed ``limit``."""
    if needed <= limit:
        return
    raise RecipeError(f"{where}: {what} needs about {size_text(needed)}, more than the "
                      f"{size_text(limit)} this run may use; nothing was allocated or "
                      f"written. {advice}")


def size_text(n_bytes: int) -> str:
    """``n_bytes`` for a person: ``"72.2 GB"``, ``"3.4 MB"``."""
    if n_bytes >= GB:
        return f"{n_bytes / GB:,.1f} GB"
    return f"{n_bytes / 1e6:,.1f} MB"


def shape_bytes(n: int, shape: tuple[int, ...], element_size: int = 4) -> int:
    """Bytes of ``n`` float32 tensors shaped ``shape``."""
    total = n * element_size
    for s in shape:
        total *= s
    return total


__all__ = ["MemoryEstimate", "activation_bytes", "check_fits", "device_memory", "estimate",
           "memory_limit", "on_meta", "shape_bytes"]
