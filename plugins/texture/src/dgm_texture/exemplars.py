"""Exemplar photographs: the embedded ones (scikit-image's bundled brick, grass and gravel
photographs, read from the installed package, never downloaded) or any image file, and
the split of each exemplar into a training region and a held-out region."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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


def split_region(image: Tensor, split: str, holdout: float) -> Tensor:
    """The part of one exemplar a split draws from: ``train`` the left ``1 - holdout`` of
    its columns, ``val`` and ``test`` the held-out rest (one region serves both)."""
    if not 0 < holdout < 1:
        raise DataError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    cut = int(round(image.shape[-1] * (1 - holdout)))
    return image[..., :cut] if split == "train" else image[..., cut:]
