"""Weight-free texture metrics: the seam score of tiled samples and the share of
generated patches that copy the exemplar. (The third, multi-scale patch sliced
Wasserstein distance, is the core's ``core:patch-swd``.)"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm.metrics import Metric, random_patches
from dgm_texture.datasets import transform


def _check(x: Tensor, what: str) -> Tensor:
    if x.dim() != 4 or min(x.shape[-2:]) < 3:
        raise ValueError(f"{what} works on images shaped (N, C, H, W) with H, W >= 3; got "
                         f"{tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def _pair_energies(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Squared differences of neighbouring lines along ``dim`` (-1: columns, -2: rows),
    averaged over everything else: the W - 1 interior pairs, and the wrap-around pair."""
    x = x.movedim(dim, -1)
    interior = (x[..., 1:] - x[..., :-1]).square().flatten(0, -2).mean(0)
    seam = (x[..., 0] - x[..., -1]).square().mean()
    return interior, seam


def seam_energies(x: Tensor, period: int = 1) -> tuple[Tensor, Tensor]:
    """Gradient energy across the borders of ``x`` tiled, next to the interior's.

    Returns ``(interior, seam)``: ``interior`` holds, for columns then rows, the squared
    difference between neighbouring lines at the seam's phase, i.e. the pairs
    (j, j + 1) with (j + 1) divisible by ``period``, each divided by their mean; ``seam``
    the two wrap-around pairs (last line next to the first) divided by the same means.
    A network that down- or up-samples by m is equivariant only to shifts by multiples of
    m, so its lines have m phases with different statistics; comparing the border with
    interior borders of the same phase (``period`` = m) compares like with like. Sizes
    not divisible by ``period`` fall back to every pair.
    """
    x = _check(x, "seam energies")
    parts, seams = [], []
    for dim in (-1, -2):
        interior, seam = _pair_energies(x, dim)
        length = x.shape[dim]
        if period > 1 and length % period == 0 and length > period:
            interior = interior[period - 1:: period]
        mean = interior.mean()
        parts.append(interior / mean)
        seams.append(seam / mean)
    return torch.cat(parts), torch.stack(seams)


def seam_score(x: Tensor, period: int = 1) -> float:
    """Gradient energy across the borders of ``x`` tiled 2x2, relative to the interior:
    the mean squared difference between the last and first column (and row) over that of
    neighbouring columns (rows) inside the image at the same phase (see
    :func:`seam_energies`), averaged over the two directions. 1 means the border looks
    like any other; a crop of a photograph tiled scores well above 1."""
    _, seam = seam_energies(x, period)
    return float(seam.mean())


def nearest_patch_rms(queries: Tensor, images: Tensor, size: int, flips: bool = True,
                      max_patches: int = 2_000_000, chunk_rows: int = 8) -> Tensor:
    """For each row of ``queries`` (flattened ``size`` x ``size`` patches), the root mean
    squared per-pixel difference to its nearest patch among every ``size`` x ``size``
    window of ``images`` at every position (and its flips when ``flips``). Windows are
    cut a few rows at a time, so a whole exemplar at stride 1 fits in memory; only as many
    images are searched as keep the windows under ``max_patches`` (many overlapping
    training crops cover the same exemplar positions)."""
    images = _check(images, "copy score").float()
    queries = queries.float()
    variants = range(4) if flips else range(1)
    per_image = len(variants) * (images.shape[-2] - size + 1) * (images.shape[-1] - size + 1)
    images = images[: max(1, max_patches // per_image)]
    best = torch.full((queries.shape[0],), float("inf"))
    q_sq = queries.square().sum(1, keepdim=True)
    for k in variants:
        x = transform(images, k)
        for top in range(0, x.shape[-2] - size + 1, chunk_rows):
            band = x[..., top: top + chunk_rows + size - 1, :]
            windows = band.unfold(2, size, 1).unfold(3, size, 1)  # N C h w size size
            pool = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, queries.shape[1])
            d_sq = q_sq - 2 * queries @ pool.T + pool.square().sum(1)
            best = torch.minimum(best, d_sq.min(dim=1).values.clamp_min(0))
    return (best / queries.shape[1]).sqrt()


def copy_score(samples: Tensor, exemplar: Tensor, patch_size: int = 16,
               threshold: float = 0.01, queries: int = 512, seed: int = 0,
               max_patches: int = 2_000_000) -> float:
    """Share of generated patches that are near-exact copies of exemplar patches:
    ``queries`` random ``patch_size`` patches of ``samples`` whose nearest exemplar
    window (any position, any flip) is within ``threshold`` root mean squared difference
    per pixel (in [-1, 1] units: 0.01 is 1.3 grey levels of 255, so only a copy up to
    8-bit rounding counts). Flat regions of a photograph can match each other that
    closely too, so read it next to the same score of held-out photograph patches."""
    samples = _check(samples, "copy score")
    if samples.shape[1] != exemplar.shape[1]:
        raise ValueError(f"copy score: samples have {samples.shape[1]} channels, the "
                         f"exemplar {exemplar.shape[1]}")
    size = min(patch_size, *samples.shape[-2:], *exemplar.shape[-2:])
    query = random_patches(samples, size, queries, seed)
    rms = nearest_patch_rms(query, exemplar, size, max_patches=max_patches)
    return float((rms <= threshold).double().mean())


def seam_metric(period: int = 16) -> Metric:
    """``texture:seam``: the seam score of the samples (see :func:`seam_score`), with
    interior borders every ``period`` pixels as the yardstick (16: the largest re-sampling
    factor of the texture networks); the reference argument is not used, so its
    real-vs-real value is the score of photograph crops tiled, a visible seam."""
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")
    return Metric(lambda samples, _reference: seam_score(samples, period))


def copy_metric(patch_size: int = 16, threshold: float = 0.01, queries: int = 512,
                max_patches: int = 200_000) -> Metric:
    """``texture:copy``: :func:`copy_score` against the training crops (as many as give
    ``max_patches`` windows)."""
    return Metric(lambda samples, train: copy_score(samples, train, patch_size, threshold,
                                                    queries, max_patches=max_patches),
                  against="train")
