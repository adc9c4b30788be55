"""Image data sets: the embedded 8x8 digits and a folder of the user's own images."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from dgm.contract import CONDITION_KEY, Condition, DataInfo, DataSource, TensorData, class_condition
from dgm.errors import DataError
from dgm.folders import folder_split, report_bad_files
from dgm_image.codec import image_header, read_image

MODALITY = "image:image"
DIGITS_SPLITS = {"train": (0, 1000), "val": (1000, 1350), "test": (1350, 1797)}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LETTERS = ("<pad>", " ", *"abcdefghijklmnopqrstuvwxyz")
"""The character vocabulary of the digits' text condition: index 0 is padding."""
DigitsCondition = Literal["class", "text", "thumbnail"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
STREAM_ABOVE_BYTES = 1 << 30
"""An image folder whose decoded split would take more memory than this is read file by
file as batches are drawn (``data.stream``'s default)."""


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


class ImageFiles(DataSource):
    """Images decoded from their files when an example is asked for (in the DataLoader's
    workers when ``data.num_workers`` > 0): only the file list is held in memory."""

    def __init__(self, files: list[Path], labels: list[int] | None, mode: str,
                 size: tuple[int, int] | None, info: DataInfo) -> None:
        self.files, self.labels_list, self.mode, self.size = files, labels, mode, size
        self.info = info

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        try:
            x = read_image(self.files[index], self.mode, self.size)
        except DataError as exc:
            raise DataError(f"{exc}; its header was readable when the run started, so it "
                            "was changed or damaged since: restore or remove it and run "
                            "the same command again (it resumes)") from None
        if tuple(x.shape[1:]) != tuple(self.info.shape[1:]):
            raise DataError(f"image {str(self.files[index])!r} is now {x.shape[-2]}x"
                            f"{x.shape[-1]}, not the {self.info.shape[1]}x"
                            f"{self.info.shape[2]} it was when the run started")
        item = {"x": x}
        if self.labels_list is not None:
            item[CONDITION_KEY] = torch.tensor(self.labels_list[index])
        return item


def folder(split: str, path: str, mode: Literal["L", "RGB"] = "RGB",
           size: list[int] | None = None, val_fraction: float = 0.1,
           test_fraction: float = 0.1, skip_bad: bool = False,
           seed: int = 0, skip_unreadable: bool | None = None,
           stream: bool | None = None) -> TensorImages | ImageFiles:
    """Every image under ``path`` (recursively), labelled by sub-folder when there are
    sub-folders. Files are split at random (fixed ``seed``) into train/val/test.
    ``size`` [H, W] resizes; without it all images must share one size. Every file's
    header is read first: unreadable files, and files of another size than the first,
    are all named in one error, or skipped with one warning naming them if ``skip_bad``
    (the same switch as the audio folder's; ``skip_unreadable`` is its old, deprecated
    name). ``stream`` decodes each image when a batch needs it instead of holding the
    split in memory; default: when the decoded split would exceed 1 GiB."""
    if skip_unreadable is not None:
        warnings.warn("data.skip_unreadable is deprecated: write data.skip_bad (one name "
                      "for every modality's folder)", DeprecationWarning, stacklevel=2)
        skip_bad = skip_unreadable
    found = folder_split(path, IMAGE_SUFFIXES, split, val_fraction, test_fraction, seed,
                         "image folder")
    root, classes = found.root, found.classes
    resize = tuple(size) if size else None
    target = resize
    files, labels, bad = [], [], []
    for file, label in zip(found.files, found.labels):
        try:
            shape = image_header(file)
        except DataError as exc:
            bad.append((file, str(exc)))
            continue
        if resize is None:
            if target is None:
                target = shape
            elif shape != target:
                bad.append((file, f"{shape[0]}x{shape[1]} while the first image is "
                                  f"{target[0]}x{target[1]}; set data.size = [H, W] to "
                                  "resize them all"))
                continue
        files.append(file)
        labels.append(label)
    if not files:
        report_bad_files(bad, skip_bad, f"image folder {str(root)!r}")
        raise DataError(f"image folder {str(root)!r}: no readable images in split {split!r}")
    channels = 1 if mode == "L" else 3
    decoded = len(files) * channels * target[0] * target[1] * 4
    if stream is None:
        stream = decoded > STREAM_ABOVE_BYTES
    info = DataInfo(MODALITY, (channels, *target), levels=256,
                    condition=class_condition(classes))
    if stream:
        report_bad_files(bad, skip_bad, f"image folder {str(root)!r}")
        return ImageFiles(files, labels if classes else None, mode, resize, info)
    images, kept = [], []
    for file, label in zip(files, labels):
        try:
            images.append(read_image(file, mode, resize))
        except DataError as exc:  # a readable header over damaged pixels
            bad.append((file, str(exc)))
            continue
        kept.append(label)
    report_bad_files(bad, skip_bad, f"image folder {str(root)!r}")
    if not images:
        raise DataError(f"image folder {str(root)!r}: no readable images in split {split!r}")
    return TensorImages(torch.stack(images), torch.tensor(kept) if classes else None, info)
