"""Image files to tensors and back: (C, H, W) float tensors in [-1, 1], C = 1 or 3."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from dgm.contract import DataInfo
from dgm.errors import DataError

Mode = Literal["L", "RGB"]


def read_image(path: Path, mode: Mode = "RGB", size: tuple[int, int] | None = None) -> Tensor:
    """Decode an image file; ``mode`` "L" gives 1 channel, "RGB" 3; ``size`` is (H, W)."""
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from None
    if size is not None and (im.height, im.width) != tuple(size):
        im = im.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return from_pil(im)


def image_header(path: Path) -> tuple[int, int]:
    """An image file's (height, width), from its header alone (no pixels decoded); a
    file that is not an image raises :class:`DataError` naming it."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from None


def reader_for(info: DataInfo | None) -> Callable[[Path], Tensor]:
    """``read_image`` with the number of channels of a run's data (1: grey, else RGB)."""
    grey = info is not None and len(info.shape) == 3 and info.shape[0] == 1
    return partial(read_image, mode="L" if grey else "RGB")


def from_pil(im: Image.Image) -> Tensor:
    array = np.asarray(im, dtype=np.float32)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy()) / 127.5 - 1.0


def to_pil(x: Tensor) -> Image.Image:
    """A (C, H, W) tensor in [-1, 1] as an 8-bit grayscale or RGB image."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1 or 3, H, W) tensor, got shape {tuple(x.shape)}")
    array = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.numpy()
    if array.shape[0] == 1:
        return Image.fromarray(array[0], mode="L")
    return Image.fromarray(array.transpose(1, 2, 0), mode="RGB")


def write_image(x: Tensor, path: Path) -> None:
    """Encode a (C, H, W) tensor in [-1, 1] to PNG or JPEG (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(x).save(path)
