"""The exemplar data set: every crop of one (or a few) exemplar images at the training
crop size, with optional flips and 90-degree rotations.

Each exemplar is cut in two: the left ``1 - holdout`` of its columns is the training
region, the rest is held out (the ``val`` and ``test`` splits), so a metric can compare
generated texture with a part of the photograph the model never saw, and the held-out
region against the training region gives the floor ("as good as the photo itself").
"""

from __future__ import annotations

import bisect
import math
from typing import Literal

from torch import Tensor

from dgm.contract import DataInfo, DataSource
from dgm.errors import DataError
from dgm_texture.exemplars import EMBEDDED, Mode, load_exemplars, split_region

MODALITY = "texture:texture"
Augment = Literal["none", "flips", "dihedral"]
TRANSFORMS = {"none": 1, "flips": 4, "dihedral": 8}
"""How many variants of each crop an augmentation setting gives."""


def transform(x: Tensor, k: int) -> Tensor:
    """The ``k``-th element of the dihedral group applied to a (C, H, W) crop: bit 0 flips
    left-right, bit 1 flips top-bottom, bit 2 transposes (with the flips, the rotations
    by 90 degrees)."""
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    if k & 4:
        x = x.transpose(-1, -2)
    return x


class ExemplarCrops(DataSource):
    """All ``crop`` x ``crop`` windows of the split's region of each exemplar, times the
    augmentation's variants. Item ``i`` is always the same crop (resume and multi-process
    sharding see a fixed data set); a fixed affine permutation of the indices spreads
    consecutive items over the image, so the first few hundred are a fair sample."""

    def __init__(self, regions: list[Tensor], crop: int, augment: Augment,
                 info: DataInfo) -> None:
        self.regions = regions
        self.crop = crop
        self.variants = TRANSFORMS[augment]
        self.info = info
        self.positions = [(r.shape[-2] - crop + 1) * (r.shape[-1] - crop + 1)
                          for r in regions]
        self.offsets = [0]
        for count in self.positions:
            self.offsets.append(self.offsets[-1] + count * self.variants)
        self.total = self.offsets[-1]
        self.stride = _coprime_stride(self.total)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.total:
            raise IndexError(f"crop {index} out of range ({self.total} crops)")
        i = (index * self.stride) % self.total
        image = bisect.bisect_right(self.offsets, i) - 1
        i -= self.offsets[image]
        variant, position = i % self.variants, i // self.variants
        region = self.regions[image]
        cols = region.shape[-1] - self.crop + 1
        top, left = divmod(position, cols)
        x = region[:, top: top + self.crop, left: left + self.crop]
        return {"x": transform(x, variant).contiguous()}


def _coprime_stride(n: int) -> int:
    """A stride near n times the golden ratio's fraction, coprime with ``n``."""
    stride = max(1, int(n * 0.6180339887))
    while math.gcd(stride, n) != 1:
        stride += 1
    return stride


def exemplar(split: str, image: str | list[str] = "brick", crop: int = 64,
             holdout: float = 0.25, augment: Augment = "flips", mode: Mode = "auto"
             ) -> ExemplarCrops:
    """Crops of exemplar photographs. ``image`` is one exemplar or a list: an embedded
    name (``brick``, ``grass``, ``gravel``: scikit-image's bundled 512x512 grayscale
    photographs) or an image file path. ``crop`` is the training crop size in pixels;
    ``holdout`` the fraction of each exemplar's columns (on the right) held out for
    ``val`` and ``test``; ``augment`` adds ``flips`` (left-right, top-bottom) or
    ``dihedral`` (flips and 90-degree rotations); ``mode`` is ``auto`` (grayscale if every
    exemplar is), ``L`` or ``RGB``."""
    if split not in ("train", "val", "test"):
        raise DataError(f"texture exemplar: unknown split {split!r}; splits are train, val, "
                        "test")
    if augment not in TRANSFORMS:
        raise DataError(f"augment must be one of {', '.join(TRANSFORMS)}, got {augment!r}")
    if crop < 4:
        raise DataError(f"crop must be at least 4 pixels, got {crop}")
    refs = [image] if isinstance(image, str) else list(image)
    images, sources = load_exemplars(refs, mode)
    regions = []
    for ref, img in zip(refs, images, strict=True):
        region = split_region(img, split, holdout)
        height, width = region.shape[-2:]
        if height < crop or width < crop:
            which = "training" if split == "train" else "held-out"
            raise DataError(f"exemplar {ref!r} ({img.shape[-1]}x{img.shape[-2]}): its "
                            f"{which} region is {width}x{height}, smaller than crop={crop}; "
                            "use a smaller crop, a larger image or another holdout")
        regions.append(region)
    info = DataInfo(MODALITY, (images[0].shape[0], crop, crop), levels=256,
                    source={"exemplars": sources, "holdout": holdout})
    return ExemplarCrops(regions, crop, augment, info)


__all__ = ["EMBEDDED", "ExemplarCrops", "exemplar", "transform"]
