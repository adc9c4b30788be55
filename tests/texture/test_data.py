"""Exemplar crops: regions, augmentation, embedded and user images, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dgm.errors import DataError
from dgm_texture.datasets import exemplar, transform
from dgm_texture.exemplars import load_exemplars, split_region


def test_embedded_exemplar_crops_come_from_their_split_region():
    (image,), sources = load_exemplars(["gravel"])
    assert image.shape == (1, 512, 512) and "gravel" in sources[0]
    train = exemplar("train", "gravel", crop=32, augment="none")
    test = exemplar("test", "gravel", crop=32, augment="none")
    assert train.info.shape == (1, 32, 32) and train.info.levels == 256
    assert len(train) == (512 - 31) * (384 - 31) and len(test) == (512 - 31) * (128 - 31)
    held = split_region(image, "test", 0.25)
    windows = held.unfold(1, 32, 1).unfold(2, 32, 1).reshape(-1, 32 * 32)
    for i in (0, 1, 777, len(test) - 1):
        crop = test[i]["x"].reshape(1, -1)
        assert (windows == crop).all(dim=1).any(), f"test crop {i} is not in the held-out region"


def test_consecutive_items_spread_over_the_image(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 64), dtype=np.uint8)
                    ).save(path)
    train = exemplar("train", str(path), crop=8, augment="none")
    region = train.regions[0]
    cols = region.shape[-1] - 7
    windows = region.unfold(1, 8, 1).unfold(2, 8, 1).reshape(-1, 64)
    rows = {int(torch.nonzero((windows == train[i]["x"].reshape(1, -1)).all(1))[0]) // cols
            for i in range(8)}
    assert len(rows) > 4  # not one walk along a single row


def test_augmentations_multiply_the_crops_and_are_the_dihedral_group():
    flips = exemplar("test", "brick", crop=32, augment="flips")
    dihedral = exemplar("test", "brick", crop=32, augment="dihedral")
    assert len(dihedral) == 2 * len(flips)
    x = torch.arange(6.0).view(1, 2, 3)
    assert torch.equal(transform(x, 1), x.flip(-1))
    assert torch.equal(transform(x, 4), x.transpose(-1, -2))
    variants = {tuple(transform(torch.arange(4.0).view(1, 2, 2), k).flatten().tolist())
                for k in range(8)}
    assert len(variants) == 8


def test_a_user_rgb_photo_and_a_list_of_exemplars(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
    data = exemplar("train", str(path), crop=16)
    assert data.info.shape == (3, 16, 16)
    both = exemplar("train", [str(path), "brick"], crop=16, augment="none")
    assert both.info.shape == (3, 16, 16)  # the grayscale exemplar is converted
    assert len(both) == 65 * (72 - 15) + 497 * (384 - 15)
    assert both[len(both) - 1]["x"].shape == (3, 16, 16)


def test_bad_exemplars_are_named(tmp_path):
    with pytest.raises(DataError, match="'nope.png' is neither an embedded exemplar"):
        exemplar("train", "nope.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read exemplar image"):
        exemplar("train", str(broken))
    with pytest.raises(DataError, match="held-out region is 128x512, smaller than crop=200"):
        exemplar("test", "brick", crop=200)
    with pytest.raises(DataError, match="holdout must be a fraction"):
        exemplar("train", "brick", holdout=1.0)
