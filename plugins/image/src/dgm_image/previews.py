"""Sample grids: a batch of images tiled into one PNG a person can look at."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from dgm_image.codec import write_image


def make_grid(images: Tensor, columns: int | None = None, padding: int = 1,
              min_cell: int = 32) -> Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image; small images are enlarged
    with nearest-neighbour scaling to at least ``min_cell`` pixels."""
    n, c, h, w = images.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    if scale > 1:
        images = F.interpolate(images.float(), scale_factor=scale, mode="nearest")
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    blank = torch.full((rows * columns - n, *images.shape[1:]), -1.0)
    images = torch.cat([images.float().cpu(), blank])
    images = F.pad(images, (padding, padding, padding, padding), value=1.0)
    return rearrange(images, "(r k) c h w -> c (r h) (k w)", r=rows, k=columns)


def write_grid(images: Tensor, path: Path) -> None:
    """Write a batch of images as one grid PNG."""
    write_image(make_grid(images), path)
