"""Texture previews: each sample tiled 2x2, so a seam, if there is one, shows as a cross
through the middle of the tile."""

from __future__ import annotations

from pathlib import Path

from einops import repeat
from torch import Tensor

from dgm_image.codec import write_image
from dgm_image.previews import make_grid

MAX_PREVIEW_PIXELS = 16_000_000
"""Cap on the preview's size: large samples show fewer tiles, never a downscaled one."""


def tile(x: Tensor, rows: int = 2, columns: int = 2) -> Tensor:
    """A (C, H, W) image (or a batch) repeated ``rows`` x ``columns`` times."""
    return repeat(x, "... c h w -> ... c (r h) (k w)", r=rows, k=columns)


def write_tiled_grid(samples: Tensor, path: Path) -> None:
    """Write the samples, each tiled 2x2, as one grid PNG (as many samples as fit under
    :data:`MAX_PREVIEW_PIXELS`)."""
    n, _, height, width = samples.shape
    fit = max(1, MAX_PREVIEW_PIXELS // (4 * height * width))
    write_image(make_grid(tile(samples[: min(n, fit)]), padding=2), path)
