"""Is a generated "seven" heard as seven? A small CNN digit classifier, trained by the
project on the training voices of the embedded spoken digits (seconds on a CPU, cached),
scores a conditional run's samples; its accuracy on the unseen test voices is the
yardstick reported next to it.

The classifier hears waveforms: every input is resampled to 8 kHz, centred in 1.024 s
and turned into its own fixed log-mel, whatever the run's representation, so log-mel
samples are scored after Griffin-Lim, as a listener would hear them::

    python -m dgm_audio.intelligibility runs/digits-mel-diffusion --n-per-class 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from dgm.errors import RecipeError
from dgm_audio.codec import resample
from dgm_audio.datasets import spoken_digits
from dgm_audio.representations import LogMel

RATE, LENGTH = 8000, 8192
"""The classifier's input: 8 kHz, 1.024 s."""
FEATURES = {"sample_rate": RATE, "n_fft": 512, "hop": 128, "n_mels": 32, "f_min": 0.0,
            "f_max": 4000.0}
TRAINING = {"epochs": 30, "batch_size": 32, "lr": 3e-3, "seed": 0, "shift": 800,
            "version": 1}
"""Training settings; they (and FEATURES) name the cached weights."""
DEFAULT_CACHE = Path.home() / ".cache" / "dgm-audio"


class DigitClassifier(nn.Module):
    """Log-mel ``(B, 1, 32, 64)`` to 10 digit logits: four conv blocks, global pooling."""

    def __init__(self, classes: int = 10, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for w in (width, width, 2 * width, 2 * width):
            layers += [nn.Conv2d(previous, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.MaxPool2d(2)]
            previous = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(previous, classes)

    def forward(self, log_mel: Tensor) -> Tensor:
        return self.head(self.body(log_mel).mean(dim=(2, 3)))


def _features() -> LogMel:
    return LogMel(RATE, FEATURES["n_fft"], FEATURES["hop"], FEATURES["n_mels"],
                  FEATURES["f_min"], FEATURES["f_max"])


def to_input(waves: Tensor, sample_rate: int) -> Tensor:
    """Waveforms ``(B, 1, L)`` at ``sample_rate`` to the classifier's log-mel input."""
    waves = resample(waves.float(), sample_rate, RATE)
    extra = LENGTH - waves.shape[-1]
    waves = (F.pad(waves, (extra // 2, extra - extra // 2)) if extra >= 0
             else waves[..., -extra // 2: -extra // 2 + LENGTH])
    return _features()(waves)


def _waves(split: str) -> tuple[Tensor, Tensor]:
    data = spoken_digits(split, representation="waveform", sample_rate=RATE,
                         duration=LENGTH / RATE)
    return data.examples, data.c


def _cache_file(cache_dir: Path, training: dict[str, Any]) -> Path:
    key = hashlib.sha1(json.dumps([FEATURES, training], sort_keys=True).encode())
    return cache_dir / f"digit-classifier-{key.hexdigest()[:12]}.safetensors"


def train_classifier(cache_dir: Path | None = None, echo=print,
                     epochs: int | None = None) -> DigitClassifier:
    """The digit classifier, loaded from ``cache_dir`` (default ~/.cache/dgm-audio) or
    trained on the training voices (random time shifts of up to 0.1 s and gains of 0.5-1
    as augmentation) and saved there. ``epochs`` overrides the default 30 (a quicker,
    weaker classifier, cached under its own name)."""
    training = {**TRAINING, **({"epochs": epochs} if epochs else {})}
    cache = _cache_file(Path(cache_dir) if cache_dir else DEFAULT_CACHE, training)
    model = DigitClassifier()
    if cache.is_file():
        load_model(model, str(cache))
        return model.eval()
    generator = torch.Generator().manual_seed(training["seed"])
    torch.manual_seed(training["seed"])
    waves, labels = _waves("train")
    optimizer = torch.optim.AdamW(model.parameters(), lr=training["lr"])
    steps = training["epochs"] * (len(waves) // training["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, training["lr"], total_steps=steps)
    features = _features()
    start = time.perf_counter()
    model.train()
    for _ in range(training["epochs"]):
        order = torch.randperm(len(waves), generator=generator)
        for i in range(len(waves) // training["batch_size"]):
            idx = order[i * training["batch_size"]:(i + 1) * training["batch_size"]]
            shift = int(torch.randint(-training["shift"], training["shift"] + 1, (1,),
                                      generator=generator))
            gain = 0.5 + 0.5 * torch.rand(len(idx), 1, 1, generator=generator)
            batch = features(torch.roll(waves[idx], shift, dims=-1) * gain)
            loss = F.cross_entropy(model(batch), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(cache))
    echo(f"trained the digit classifier in {time.perf_counter() - start:.1f} s: {cache}")
    return model


@torch.no_grad()
def predict(model: DigitClassifier, waves: Tensor, sample_rate: int) -> Tensor:
    """Predicted digit per waveform ``(B, 1, L)``."""
    return torch.cat([model(to_input(chunk, sample_rate)).argmax(1)
                      for chunk in waves.split(64)])


def accuracy_on_test_voices(model: DigitClassifier) -> float:
    """Accuracy on the 160 clips of the 8 held-out test voices."""
    waves, labels = _waves("test")
    return float((predict(model, waves, RATE) == labels).double().mean())


def score_run(run_path: Path, n_per_class: int = 10, seed: int = 0,
              cache_dir: Path | None = None, options: dict[str, Any] | None = None,
              out: Path | None = None, classifier_epochs: int | None = None,
              echo=print) -> dict[str, Any]:
    """Draw ``n_per_class`` samples of every digit from a conditional run, invert them to
    sound with the run's own settings, and report the classifier's accuracy on them
    (overall and per digit) next to its accuracy on the real test voices; also the
    real-time factor of generation (seconds of compute per second of audio). Writes
    ``intelligibility.json`` in the run folder and, with ``out``, each digit's samples
    as WAV files with their spectrogram grid and listening page in ``out/<digit>/``,
    and ``out/index.html`` linking them with what the classifier heard."""
    from dgm.loaded_run import LoadedRun
    from dgm.sampling import class_index, draw_samples

    loaded = LoadedRun.open(run_path)
    run, family, modality, info = loaded.run, loaded.family, loaded.modality, loaded.info
    if not family.conditional:
        raise RecipeError(f"run {str(run.path)!r} was trained without a condition: "
                          "intelligibility scores samples drawn for each digit")
    rate = modality.representation.metadata["sample_rate"]
    model = train_classifier(cache_dir, echo, epochs=classifier_epochs)
    real = accuracy_on_test_voices(model)
    per_class, seconds, audio_seconds = {}, 0.0, 0.0
    correct = 0
    pages: list[str] = []
    for name in info.condition.classes:
        index = class_index(loaded, name)
        start = time.perf_counter()
        samples = draw_samples(family, n_per_class, n_per_class, seed + index, options,
                               condition=index)
        waves = modality.representation.inverse(samples)
        seconds += time.perf_counter() - start
        audio_seconds += waves.shape[0] * waves.shape[-1] / rate
        heard = predict(model, waves, rate)
        hits = int((heard == index).sum())
        per_class[name] = hits / n_per_class
        correct += hits
        if out is not None:
            folder = Path(out) / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, wave in enumerate(waves):
                modality.write(wave, folder / f"sample-{i:04d}{modality.file_suffix}")
            modality.preview(samples, folder / "grid.png")
            pages.append(f'<li><a href="{name}/index.html">{name}</a>: heard as '
                         f'{", ".join(info.condition.classes[int(k)] for k in heard)}</li>')
    report = {"classifier_accuracy_real_test_voices": real,
              "accuracy_on_generated": correct / (n_per_class * len(info.condition.classes)),
              "per_class": per_class, "n_per_class": n_per_class,
              "real_time_factor": seconds / audio_seconds,
              "generation_seconds": seconds, "audio_seconds": audio_seconds}
    (run.path / "intelligibility.json").write_text(json.dumps(report, indent=2))
    if out is not None:
        (Path(out) / "index.html").write_text(
            f"<!doctype html><meta charset=utf-8><title>{run.path.name}: samples per "
            f"digit</title><h1>{run.path.name}: {n_per_class} samples per digit</h1>"
            f"<p>Classifier accuracy {report['accuracy_on_generated']:.1%} on these, "
            f"{real:.1%} on real test voices.</p><ul>" + "".join(pages) + "</ul>\n")
    echo(f"classifier accuracy: {report['accuracy_on_generated']:.1%} on generated digits, "
         f"{real:.1%} on real test voices; real-time factor {report['real_time_factor']:.3f}")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score a conditional speech run with the "
                                     "project's digit classifier")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--n-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="write each digit's WAVs, spectrograms and a page here")
    args = parser.parse_args(argv)
    score_run(args.run_dir, args.n_per_class, args.seed, args.cache_dir, out=args.out)


if __name__ == "__main__":
    main()
