"""Image data sets: the embedded 8x8 digits and a folder of the user's own images."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor

from dgm.contract import Condition, DataInfo, TensorData, class_condition
from dgm.errors import DataError
from dgm.folders import folder_split, report_bad_files
from dgm_image.codec import read_image

MODALITY = "image:image"
DIGITS_SPLITS = {"train": (0, 1000), "val": (1000, 1350), "test": (1350, 1797)}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LETTERS = ("<pad>", " ", *"abcdefghijklmnopqrstuvwxyz")
"""The character vocabulary of the digits' text condition: index 0 is padding."""
DigitsCondition = Literal["class", "text", "thumbnail"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class TensorImages(TensorData):
    """Images and optional conditions (class indices, token sequences or tensors) held
    in memory."""

    @property
    def images(self) -> Tensor:
        return self.x


def digits(split: str, condition: DigitsCondition = "class") -> TensorImages:
    """scikit-learn's bundled 8x8 handwritten digits (UCI optical digits test set), 17
    intensity levels 0..16 mapped to [-1, 1]. The split follows the file's order:
    examples 0-999 train, 1000-1349 val, 1350-1796 test.

    ``condition`` is what each digit carries: ``class`` (its class, 0..9), ``text`` (its
    name spelt in letters, "seven": a token condition) or ``thumbnail`` (the digit
    averaged down to 4x4: a tensor condition in the image modality, for generating
    a sharp 8x8 digit from a small one)."""
    from sklearn.datasets import load_digits

    if split not in DIGITS_SPLITS:
        raise DataError(f"digits: unknown split {split!r}; splits are train, val, test")
    bunch = load_digits()
    start, stop = DIGITS_SPLITS[split]
    pixels = torch.as_tensor(bunch.data[start:stop], dtype=torch.float32)
    images = (pixels / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    labels = torch.as_tensor(bunch.target[start:stop], dtype=torch.long)
    if condition == "class":
        declared = Condition.of_classes([str(i) for i in range(10)])
        c = labels
    elif condition == "text":
        declared = Condition.of_tokens(LETTERS, max(len(w) for w in DIGIT_WORDS))
        c = torch.stack([declared.encode_text(DIGIT_WORDS[k]) for k in labels.tolist()])
    elif condition == "thumbnail":
        declared = Condition.of_tensor(MODALITY, (1, 4, 4))
        c = torch.nn.functional.avg_pool2d(images, 2)
    else:
        raise DataError(f"digits: unknown condition {condition!r}; conditions are class, "
                        "text and thumbnail")
    info = DataInfo(MODALITY, (1, 8, 8), levels=17, condition=declared)
    return TensorImages(images, c, info)


def folder(split: str, path: str, mode: Literal["L", "RGB"] = "RGB",
           size: list[int] | None = None, val_fraction: float = 0.1,
           test_fraction: float = 0.1, skip_bad: bool = False,
           seed: int = 0, skip_unreadable: bool | None = None) -> TensorImages:
    """Every image under ``path`` (recursively), labelled by sub-folder when there are
    sub-folders. Files are split at random (fixed ``seed``) into train/val/test.
    ``size`` [H, W] resizes; without it all images must share one size. Unreadable
    files, and files of another size than the first, are all named in one error, or
    skipped with one warning naming them if ``skip_bad`` (the same switch as the audio
    folder's; ``skip_unreadable`` is its old, deprecated name)."""
    if skip_unreadable is not None:
        warnings.warn("data.skip_unreadable is deprecated: write data.skip_bad (one name "
                      "for every modality's folder)", DeprecationWarning, stacklevel=2)
        skip_bad = skip_unreadable
    found = folder_split(path, IMAGE_SUFFIXES, split, val_fraction, test_fraction, seed,
                         "image folder")
    root, classes = found.root, found.classes
    resize = tuple(size) if size else None
    target = resize
    images, labels, bad = [], [], []
    for file, label in zip(found.files, found.labels):
        try:
            image = read_image(file, mode, resize)
        except DataError as exc:
            bad.append((file, str(exc)))
            continue
        if target is None:
            target = tuple(image.shape[1:])
        elif tuple(image.shape[1:]) != target:
            bad.append((file, f"{image.shape[-2]}x{image.shape[-1]} while the first image "
                              f"is {target[0]}x{target[1]}; set data.size = [H, W] to "
                              "resize them all"))
            continue
        images.append(image)
        labels.append(label)
    report_bad_files(bad, skip_bad, f"image folder {str(root)!r}")
    if not images:
        raise DataError(f"image folder {str(root)!r}: no readable images in split {split!r}")
    info = DataInfo(MODALITY, (1 if mode == "L" else 3, *target), levels=256,
                    condition=class_condition(classes))
    return TensorImages(torch.stack(images), torch.tensor(labels) if classes else None, info)
