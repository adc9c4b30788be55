"""Image data sets: the embedded 8x8 digits and a folder of the user's own images."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from dgm.contract import DataInfo, TensorData
from dgm.errors import DataError
from dgm_image.codec import read_image

MODALITY = "image:image"
DIGITS_SPLITS = {"train": (0, 1000), "val": (1000, 1350), "test": (1350, 1797)}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class TensorImages(TensorData):
    """Images and optional labels held in memory."""

    @property
    def images(self) -> Tensor:
        return self.x


def digits(split: str) -> TensorImages:
    """scikit-learn's bundled 8x8 handwritten digits (UCI optical digits test set), 17
    intensity levels 0..16 mapped to [-1, 1]. The split follows the file's order:
    examples 0-999 train, 1000-1349 val, 1350-1796 test."""
    from sklearn.datasets import load_digits

    if split not in DIGITS_SPLITS:
        raise DataError(f"digits: unknown split {split!r}; splits are train, val, test")
    bunch = load_digits()
    start, stop = DIGITS_SPLITS[split]
    pixels = torch.as_tensor(bunch.data[start:stop], dtype=torch.float32)
    images = (pixels / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    labels = torch.as_tensor(bunch.target[start:stop], dtype=torch.long)
    info = DataInfo(MODALITY, (1, 8, 8), levels=17, classes=tuple(str(i) for i in range(10)))
    return TensorImages(images, labels, info)


def folder(split: str, path: str, mode: Literal["L", "RGB"] = "RGB",
           size: list[int] | None = None, val_fraction: float = 0.1,
           test_fraction: float = 0.1, skip_unreadable: bool = False,
           seed: int = 0) -> TensorImages:
    """Every image under ``path`` (recursively), labelled by sub-folder when there are
    sub-folders. Files are split at random (fixed ``seed``) into train/val/test.
    ``size`` [H, W] resizes; without it all images must share one size. An unreadable
    file is an error naming it, or is skipped with a warning if ``skip_unreadable``."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {str(root)!r} holds no image files "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    classes = sorted({p.relative_to(root).parts[0] for p in files
                      if len(p.relative_to(root).parts) > 1})
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    n_test = round(len(files) * test_fraction)
    n_val = round(len(files) * val_fraction)
    chosen = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
              "train": order[n_test + n_val:]}[split]
    resize = tuple(size) if size else None
    target = resize
    images, labels, bad = [], [], []
    for i in sorted(chosen):
        try:
            image = read_image(files[i], mode, resize)
        except DataError as exc:
            if not skip_unreadable:
                raise DataError(f"{exc}. Remove or fix the file, or set "
                                "data.skip_unreadable = true to skip such files") from None
            bad.append(str(files[i]))
            continue
        if target is None:
            target = tuple(image.shape[1:])
        elif tuple(image.shape[1:]) != target:
            raise DataError(f"image {str(files[i])!r} is {tuple(image.shape[1:])} but earlier "
                            f"images are {target}; set data.size = [H, W] to resize")
        images.append(image)
        parts = files[i].relative_to(root).parts
        labels.append(classes.index(parts[0]) if len(parts) > 1 else 0)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad)}",
                      stacklevel=2)
    if not images:
        raise DataError(f"image folder {str(root)!r}: no readable images in split {split!r}")
    info = DataInfo(MODALITY, (1 if mode == "L" else 3, *target), levels=256,
                    classes=tuple(classes))
    return TensorImages(torch.stack(images), torch.tensor(labels) if classes else None, info)
