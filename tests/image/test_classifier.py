"""The digit classifier that scores class-conditional samples: it learns the real
digits, and its augmentation only moves images."""

from __future__ import annotations

import torch

from dgm_image import classifier
from dgm_image.datasets import digits


def test_shifts_move_each_image_by_at_most_one_pixel_and_fill_with_background():
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    moved = classifier._shifted(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)
    for image, out in zip(padded, moved):
        windows = [image[:, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out, w) for w in windows)
    assert not torch.equal(moved, x)  # most are moved


def test_a_briefly_trained_classifier_knows_most_real_test_digits():
    model = classifier.train_classifier(epochs=6)
    accuracy = classifier.test_accuracy(model)
    assert accuracy > 0.85, accuracy
    test = digits("test")
    shuffled = test.c[torch.randperm(len(test.c), generator=torch.Generator().manual_seed(0))]
    assert float((classifier.predict(model, test.x) == shuffled).double().mean()) < 0.2
