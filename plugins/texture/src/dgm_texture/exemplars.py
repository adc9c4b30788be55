"""Exemplar photographs: the embedded ones (scikit-image's bundled brick, grass and gravel
photographs, read from the installed package, never downloaded) or any image file, and
the split of each exemplar into a training region and a held-out region."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from dgm.errors import DataError
from dgm_image.codec import from_pil

EMBEDDED = ("brick", "grass", "gravel")
"""Exemplars shipped inside scikit-image's wheel (512x512 grayscale photographs, CC0)."""

Mode = Literal["auto", "L", "RGB"]


def embedded_image(name: str) -> Image.Image:
    """One of scikit-image's bundled texture photographs as a PIL image."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def _open(ref: str) -> tuple[Image.Image, str]:
    if ref in EMBEDDED:
        return embedded_image(ref), f"scikit-image {ref}"
    path = Path(ref).expanduser()
    if not path.is_file():
        raise DataError(f"exemplar {ref!r} is neither an embedded exemplar "
                        f"({', '.join(EMBEDDED)}) nor an image file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy(), str(path)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read exemplar image {str(path)!r}: {exc}") from None


def _is_gray(im: Image.Image) -> bool:
    return im.mode in ("1", "L", "LA", "I", "I;16", "F")


def load_exemplars(refs: list[str], mode: Mode = "auto") -> tuple[list[Tensor], list[str]]:
    """Each exemplar as a (C, H, W) tensor in [-1, 1] with 256 levels, and where it came
    from. ``mode`` "auto" keeps grayscale when every exemplar is grayscale, else RGB."""
    if not refs:
        raise DataError("name at least one exemplar (data.image = \"brick\" or a path)")
    opened = [_open(ref) for ref in refs]
    if mode == "auto":
        mode = "L" if all(_is_gray(im) for im, _ in opened) else "RGB"
    if mode not in ("L", "RGB"):
        raise DataError(f"mode must be 'auto', 'L' or 'RGB', got {mode!r}")
    return [from_pil(im.convert(mode)) for im, _ in opened], [where for _, where in opened]


@dataclass(frozen=True)
class Regions:
    """Where an exemplar is split: columns ``[0, cut)`` train, ``[cut, W)`` held out."""

    cut: int

    @classmethod
    def of(cls, width: int, holdout: float) -> Regions:
        if not 0 < holdout < 1:
            raise DataError(f"holdout must be a fraction between 0 and 1, got {holdout}")
        return cls(cut=int(round(width * (1 - holdout))))

    def region(self, image: Tensor, split: str) -> Tensor:
        """The part of ``image`` a split draws from: train the left part; val and test
        the held-out right part (one region serves both)."""
        return image[..., : self.cut] if split == "train" else image[..., self.cut:]


def split_region(image: Tensor, split: str, holdout: float) -> Tensor:
    """The training (``split == "train"``) or held-out region of one exemplar."""
    return Regions.of(image.shape[-1], holdout).region(image, split)


def to_levels(x: Tensor) -> Tensor:
    """Snap values in [-1, 1] onto the 256-level 8-bit grid."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
