"""Does a generated "seven" look like a seven? A small CNN digit classifier the project
trains itself on the embedded digits' training split (weight-free: nothing downloaded),
used to score class-conditional samples.

    python -m dgm_image.classifier RUN [--n-per-class 50]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm_image.datasets import digits


class DigitClassifier(nn.Module):
    """8x8 digits in [-1, 1] to 10 logits: two conv layers, a pool, a linear head."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * width * 16, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _shifted(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image moved by up to one pixel in each direction (background fill), so the
    classifier does not rely on exact placement."""
    out = torch.empty_like(x)
    shifts = torch.randint(0, 9, (x.shape[0],), generator=generator)
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    height, width = x.shape[-2:]
    for shift in range(9):
        dy, dx = divmod(shift, 3)
        chosen = shifts == shift
        out[chosen] = padded[chosen, :, dy:dy + height, dx:dx + width]
    return out


def train_classifier(epochs: int = 40, seed: int = 0) -> DigitClassifier:
    """The classifier trained on the training split (1000 digits), a few seconds on a CPU."""
    data = digits("train")
    x, y = data.x, data.c
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for batch in order.split(64):
            loss = F.cross_entropy(model(_shifted(x[batch], generator)), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: DigitClassifier, x: Tensor) -> Tensor:
    """The most likely digit of each image."""
    return model(x.float()).argmax(1)


def test_accuracy(model: DigitClassifier) -> float:
    """Accuracy on the real test split (447 digits)."""
    data = digits("test")
    return float((predict(model, data.x) == data.c).double().mean())


def score_run(run: Path, n_per_class: int = 50, seed: int = 0,
              options: dict | None = None, model: DigitClassifier | None = None) -> dict:
    """Draw ``n_per_class`` samples of every digit from a class-conditional digits run
    and report the share the classifier assigns to the class asked for."""
    from dgm.loaded_run import LoadedRun
    from dgm.sampling import draw_samples

    family = LoadedRun.open(run).family
    if not family.conditional:
        raise SystemExit(f"{run}: the run was trained without a condition")
    model = model or train_classifier()
    per_class = {}
    for k in range(10):
        samples = draw_samples(family, n_per_class, 100, seed + k, options, condition=k)
        per_class[str(k)] = float((predict(model, samples) == k).double().mean())
    return {"accuracy_on_generated": sum(per_class.values()) / 10, "per_class": per_class,
            "n_per_class": n_per_class, "classifier_test_accuracy": test_accuracy(model)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Score a class-conditional digits run "
                                     "with the project's digit classifier")
    parser.add_argument("run", type=Path)
    parser.add_argument("--n-per-class", type=int, default=50)
    args = parser.parse_args()
    start = time.perf_counter()
    report = score_run(args.run, args.n_per_class)
    report["seconds"] = time.perf_counter() - start
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
