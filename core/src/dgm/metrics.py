"""Weight-free sample metrics: they compare two batches of examples without any
pretrained network, so they run anywhere and nothing is downloaded.

Each public function here is a *factory* (registered through ``register_metrics``):
its keyword arguments are the metric's settings, and it returns a callable
``metric(samples, reference) -> float`` over two batches shaped ``(N, ...)`` in the data
representation. A metric that compares samples with the *training* examples (a
memorisation check) carries ``against = "train"``; the others compare with held-out data.

- ``kernel_mmd``: unbiased MMD^2 with Gaussian kernels on flattened examples.
- ``patch_swd``: sliced Wasserstein distance between the patches of a Laplacian pyramid
  (images only).
- ``copy_rate``: share of samples that nearly duplicate a training example.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


class Metric:
    """A metric with its settings bound: ``metric(samples, reference) -> float``.

    ``against`` says what ``reference`` should be: ``"heldout"`` (examples the model did
    not train on) or ``"train"`` (the training examples, for memorisation checks).
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], float],
                 against: Literal["heldout", "train"] = "heldout") -> None:
        self.fn = fn
        self.against = against

    def __call__(self, samples: Tensor, reference: Tensor) -> float:
        return float(self.fn(samples, reference))


def _flat(x: Tensor, what: str) -> Tensor:
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"{what}: expected a batch shaped (N, ...), got {tuple(x.shape)}")
    return x.detach().reshape(x.shape[0], -1).to("cpu", torch.float64)


def _check_pair(a: Tensor, b: Tensor, name: str) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{name}: samples {tuple(a.shape)} and reference "
                         f"{tuple(b.shape)} differ in shape per example")


# -------------------------------------------------------------------------------------
# Kernel MMD
# -------------------------------------------------------------------------------------


def mmd_squared(x: Tensor, y: Tensor, scales: Sequence[float] = (0.5, 1.0, 2.0)) -> float:
    """Unbiased estimate of MMD^2 between the distributions of ``x`` and ``y``.

    Kernel: the sum over ``s`` in ``scales`` of ``exp(-|a - b|^2 / (2 (s * m)^2))``
    on flattened examples, where ``m`` (the median heuristic) is the median Euclidean
    distance between distinct examples of the pooled set ``x + y``. The estimate averages
    k(x_i, x_j) and k(y_i, y_j) over i != j, so it is unbiased and can be slightly
    negative when the two distributions are the same.
    """
    a, b = _flat(x, "mmd"), _flat(y, "mmd")
    _check_pair(a, b, "mmd")
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd: needs at least 2 examples in each set, got {n} and {m}")
    pooled = torch.cat([a, b])
    sq = torch.cdist(pooled, pooled).square()
    off_diagonal = ~torch.eye(n + m, dtype=torch.bool)
    median = sq[off_diagonal].median().sqrt()
    if median == 0:  # every example equal: the distributions cannot be told apart
        return 0.0
    kernel = sum(torch.exp(-sq / (2 * (s * median) ** 2)) for s in scales)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2 * kxy.mean())


def kernel_mmd(scales: Sequence[float] = (0.5, 1.0, 2.0)) -> Metric:
    """Kernel MMD^2 (unbiased) with Gaussian kernels at ``scales`` x the median distance."""
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales should be positive numbers, got {scales!r}")
    return Metric(lambda x, y: mmd_squared(x, y, tuple(scales)))


# -------------------------------------------------------------------------------------
# Multi-scale patch sliced Wasserstein distance
# -------------------------------------------------------------------------------------


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Band-pass images, finest first, ending with the coarsest low-pass image.

    Down-sampling is a 2x2 average; up-sampling is bilinear back to the finer size.
    Stops early once a side would drop below 2 pixels.
    """
    bands = []
    current = x
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 4:
            break
        low = F.avg_pool2d(current, 2)
        up = F.interpolate(low, size=current.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(current - up)
        current = low
    bands.append(current)
    return bands


def level_patch_size(height: int, width: int, patch_size: int) -> int:
    """``patch_size``, shrunk to half the shorter side (at least 1) on small images, so
    an 8x8 digit still yields many distinct patches (4x4 at 8x8, 2x2 at 4x4)."""
    return max(1, min(patch_size, min(height, width) // 2))


def random_patches(x: Tensor, size: int, k: int, seed: int) -> Tensor:
    """``k`` patches of ``size`` x ``size`` at random (image, row, column) positions,
    without repeats, as rows ``(k, C*size*size)``; every patch when there are at most
    ``k``. Positions are drawn before anything is cut out, so large images stay cheap."""
    n, _, height, width = x.shape
    rows, cols = height - size + 1, width - size + 1
    total = n * rows * cols
    if total <= k:
        flat = torch.arange(total)
    else:
        flat = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:k]
    image, rest = flat // (rows * cols), flat % (rows * cols)
    top, left = rest // cols, rest % cols
    offsets = torch.arange(size)
    patches = x[image[:, None, None, None],
                torch.arange(x.shape[1])[None, :, None, None],
                (top[:, None] + offsets)[:, None, :, None],
                (left[:, None] + offsets)[:, None, None, :]]
    return rearrange(patches, "k c h w -> k (c h w)")


def _patch_count(x: Tensor, size: int) -> int:
    return x.shape[0] * (x.shape[-2] - size + 1) * (x.shape[-1] - size + 1)


def sliced_wasserstein(a: Tensor, b: Tensor, n_projections: int, seed: int) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the
    projections of the rows of ``a`` and ``b`` (equal counts: sort and match)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], n_projections, generator=generator, dtype=a.dtype)
    directions /= directions.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ directions, dim=0)
    pb, _ = torch.sort(b @ directions, dim=0)
    return float((pa - pb).abs().mean())


def patch_swd_distance(x: Tensor, y: Tensor, levels: int = 3, patch_size: int = 7,
                       n_projections: int = 128, max_patches: int = 16384,
                       seed: int = 0) -> float:
    """Multi-scale patch sliced Wasserstein distance between two batches of images
    (the two may differ in size, e.g. generated textures against a photograph).

    For each level of a Laplacian pyramid: cut the same number ``k`` of patches of the
    level's size (:func:`level_patch_size`) from each set at random positions (every
    patch when there are fewer than ``max_patches``), normalise each channel with the
    *reference's* mean and standard deviation at that level (the same map for both sets,
    so a brightness shift still counts), and take the sliced Wasserstein-1 distance over
    ``n_projections`` random directions. The result is the mean over levels. All
    randomness comes from ``seed``, so the value is deterministic; it is 0 for identical
    sets.
    """
    for t, what in ((x, "samples"), (y, "reference")):
        if t.dim() != 4:
            raise ValueError(f"patch-swd works on images shaped (N, C, H, W); the "
                             f"{what} are shaped {tuple(t.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"patch-swd: samples have {x.shape[1]} channels, the reference "
                         f"{y.shape[1]}")
    if min(*x.shape[-2:], *y.shape[-2:]) < 2:
        raise ValueError(f"patch-swd: images must be at least 2x2, got {tuple(x.shape[-2:])} "
                         f"and {tuple(y.shape[-2:])}")
    x = x.detach().to("cpu", torch.float64)
    y = y.detach().to("cpu", torch.float64)
    channels = x.shape[1]
    distances = []
    for level, (bx, by) in enumerate(zip(laplacian_pyramid(x, levels),
                                         laplacian_pyramid(y, levels), strict=True)):
        size = level_patch_size(min(bx.shape[-2], by.shape[-2]),
                                min(bx.shape[-1], by.shape[-1]), patch_size)
        k = min(_patch_count(bx, size), _patch_count(by, size), max_patches)
        px = random_patches(bx, size, k, seed + level)
        py = random_patches(by, size, k, seed + level)
        per_channel = rearrange(py, "k (c s) -> c (k s)", c=channels)
        mean, std = per_channel.mean(dim=1), per_channel.std(dim=1).clamp_min(1e-8)
        mean = mean.repeat_interleave(size * size)
        std = std.repeat_interleave(size * size)
        distances.append(sliced_wasserstein((px - mean) / std, (py - mean) / std,
                                            n_projections, seed + 1000 + level))
    return sum(distances) / len(distances)


def patch_swd(levels: int = 3, patch_size: int = 7, n_projections: int = 128,
              max_patches: int = 16384, seed: int = 0) -> Metric:
    """Multi-scale patch sliced Wasserstein distance (see :func:`patch_swd_distance`)."""
    if levels < 1 or patch_size < 1 or n_projections < 1 or max_patches < 1:
        raise ValueError("levels, patch_size, n_projections and max_patches must be >= 1")
    return Metric(lambda x, y: patch_swd_distance(x, y, levels, patch_size, n_projections,
                                                  max_patches, seed))


# -------------------------------------------------------------------------------------
# Nearest-neighbour copy rate
# -------------------------------------------------------------------------------------


def nearest_distances(queries: Tensor, pool: Tensor, exclude_self: bool = False,
                      chunk: int = 1024) -> Tensor:
    """L2 distance from each row of ``queries`` to its nearest row of ``pool``; with
    ``exclude_self`` (``queries`` is ``pool``) an example is not its own neighbour."""
    out = []
    for start in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[start:start + chunk], pool)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = math.inf
        out.append(d.min(dim=1).values)
    return torch.cat(out)


def copy_rate_value(samples: Tensor, train: Tensor, ratio: float = 1 / 3) -> float:
    """Share of ``samples`` within ``ratio`` x the typical train-to-train NN distance of
    a training example.

    The typical distance is the median, over training examples, of the L2 distance to
    their nearest *other* training example. A sample counts as a copy when its nearest
    training example is at most ``ratio`` times that far away.
    """
    a, t = _flat(samples, "copy-rate"), _flat(train, "copy-rate")
    _check_pair(a, t, "copy-rate")
    if t.shape[0] < 2:
        raise ValueError(f"copy-rate: needs at least 2 training examples, got {t.shape[0]}")
    typical = nearest_distances(t, t, exclude_self=True).median()
    return float((nearest_distances(a, t) <= ratio * typical).double().mean())


def copy_rate(ratio: float = 1 / 3) -> Metric:
    """Nearest-neighbour copy rate against the training examples (see
    :func:`copy_rate_value`)."""
    if ratio <= 0:
        raise ValueError(f"ratio should be positive, got {ratio}")
    return Metric(lambda x, y: copy_rate_value(x, y, ratio), against="train")


__all__ = ["Metric", "copy_rate", "copy_rate_value", "kernel_mmd", "laplacian_pyramid",
           "mmd_squared", "nearest_distances", "patch_swd", "patch_swd_distance",
           "random_patches", "sliced_wasserstein"]
