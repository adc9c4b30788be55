"""Audio data sets: the embedded spoken digits and a folder of the user's recordings.

Both load waveforms, resample them to ``sample_rate``, centre each clip in a fixed
``duration`` (padding with silence, cutting longer clips), and yield the chosen
representation; ``DataInfo.source["representation"]`` records its settings so the run's
own settings invert its samples.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
from torch import Tensor

from dgm.contract import DataInfo, TensorData, class_condition
from dgm.errors import DataError, RecipeWarning
from dgm.folders import folder_split, report_bad_files
from dgm_audio.codec import AUDIO_SUFFIXES, read_audio
from dgm_audio.representations import Kind, duration_samples, make_representation
from dgm_audio.vocoders import vocoder

MODALITY = "audio:audio"
SPLITS = ("train", "val", "test")
DIGITS_DIR = Path(__file__).parent / "data" / "spoken_digits"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
               "nine")
SILENCE_PEAK = 1e-3
"""A clip whose loudest sample is below this (about -60 dBFS) counts as silent."""


class AudioClips(TensorData):
    """Examples in a representation, with optional labels, held in memory."""

    def __init__(self, examples: Tensor, labels: Tensor | None, info: DataInfo,
                 names: list[str]) -> None:
        super().__init__(examples, labels, info)
        self.names = names

    @property
    def examples(self) -> Tensor:
        return self.x


def fit_length(wave: Tensor, length: int) -> Tensor:
    """Centre ``wave`` ``(1, L)`` in ``length`` samples: pad with zeros or cut both ends."""
    extra = length - wave.shape[-1]
    if extra >= 0:
        return F.pad(wave, (extra // 2, extra - extra // 2))
    start = (-extra) // 2
    return wave[..., start:start + length]


def file_header(path: Path) -> tuple[int, int]:
    """An audio file's own sample rate and channel count, from its header; (0, 1) when
    the header is unreadable (reading the file then says what is wrong)."""
    try:
        info = sf.info(str(path))
        return int(info.samplerate), int(info.channels)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0, 1


def _say_what_was_changed(root: Path, n: int, sample_rate: int, rates: dict[int, int],
                          cut: int, longest: float, duration: float, mixed: int) -> None:
    """One ``dgm: warning:`` saying which clips were resampled, cut or mixed down, so a
    user training on 16 kHz recordings is not surprised by 8 kHz samples."""
    said = []
    if rates:
        found = ", ".join(f"{count} at {rate} Hz" for rate, count in sorted(rates.items()))
        said.append(f"{sum(rates.values())} of {n} training clips were resampled to "
                    f"{sample_rate} Hz (data.sample_rate; {found})")
    if cut:
        said.append(f"{cut} of {n} were longer than data.duration = {duration:g} s and were "
                    f"cut to their middle {duration:g} s (the longest was {longest:.2f} s)")
    if mixed:
        said.append(f"{mixed} of {n} had more than one channel and were mixed down to mono")
    warnings.warn(f"audio folder {str(root)!r}: {'; '.join(said)}. Set data.sample_rate and "
                  "data.duration to keep them as they are; the other splits are treated "
                  "the same", RecipeWarning, stacklevel=3)


def _check_split(split: str, what: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{what}: unknown split {split!r}; splits are {', '.join(SPLITS)}")


def _build(waves: list[Tensor], labels: list[int] | None, classes: tuple[str, ...],
           names: list[str], representation: Kind, sample_rate: int,
           settings: dict, source: dict) -> AudioClips:
    if representation == "log-mel":  # an unknown vocoder fails now, not at sampling
        vocoder(settings["vocoder"], where="[data] vocoder")
    rep = make_representation(representation, sample_rate=sample_rate, **settings)
    batch = torch.stack(waves)
    examples = torch.cat([rep.forward(chunk) for chunk in batch.split(256)])
    levels = rep.metadata["mu"] + 1 if representation == "mu-law" else None
    info = DataInfo(MODALITY, tuple(examples.shape[1:]), levels=levels,
                    condition=class_condition(classes),
                    source={**source, "representation": rep.metadata})
    label_tensor = torch.tensor(labels) if labels is not None else None
    return AudioClips(examples, label_tensor, info, names)


def spoken_digits(split: str, representation: Kind = "log-mel", sample_rate: int = 8000,
                  duration: float = 1.024, n_fft: int = 512, hop: int = 128,
                  window: str = "hann", n_mels: int = 32, f_min: float = 0.0,
                  f_max: float | None = None, mu: int = 255,
                  digits: list[int] | None = None,
                  vocoder: str = "audio:griffin-lim") -> AudioClips:
    """The embedded spoken digits: "zero" to "nine" by 40 espeak-ng voices at two
    speed/pitch settings (16 kHz FLAC, made by scripts/make_spoken_digits.py), split by
    voice (28 train, 4 val, 8 test voices: 560/80/160 clips). Labels are the digits.
    ``digits`` keeps only those digits (labels keep their values). ``vocoder`` names
    the registered vocoder that turns log-mel back into sound (``dgm plugins`` lists
    them)."""
    _check_split(split, "audio:spoken-digits")
    manifest = DIGITS_DIR / "manifest.csv"
    if not manifest.is_file():
        raise DataError(f"the embedded spoken digits are missing ({manifest}); reinstall "
                        "dgm-audio or run plugins/audio/scripts/make_spoken_digits.py")
    with open(manifest, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split]
    if digits is not None:
        rows = [r for r in rows if int(r["digit"]) in digits]
    length = duration_samples(duration, sample_rate)
    waves = [fit_length(read_audio(DIGITS_DIR / r["file"], sample_rate), length)
             for r in rows]
    settings = {"n_fft": n_fft, "hop": hop, "window": window, "n_mels": n_mels,
                "f_min": f_min, "f_max": f_max, "mu": mu, "vocoder": vocoder}
    source = {"dataset": "audio:spoken-digits", "split": split, "duration": duration,
              "voices": sorted({r["voice"] for r in rows})}
    return _build(waves, [int(r["digit"]) for r in rows], DIGIT_WORDS,
                  [r["file"] for r in rows], representation, sample_rate, settings, source)


def folder(split: str, path: str, representation: Kind = "log-mel",
           sample_rate: int = 8000, duration: float = 1.024, n_fft: int = 512,
           hop: int = 128, window: str = "hann", n_mels: int = 32, f_min: float = 0.0,
           f_max: float | None = None, mu: int = 255, val_fraction: float = 0.1,
           test_fraction: float = 0.1, skip_bad: bool = False, seed: int = 0,
           vocoder: str = "audio:griffin-lim") -> AudioClips:
    """Every audio file (WAV, FLAC, OGG, AIFF) under ``path``, labelled by its top-level
    sub-folder when there are sub-folders, split at random (fixed ``seed``). Unreadable,
    truncated, empty and silent files are all named in one error, or, with
    ``skip_bad``, skipped with one warning that names them all."""
    found = folder_split(path, AUDIO_SUFFIXES, split, val_fraction, test_fraction, seed,
                         "audio folder")
    root, classes = found.root, found.classes
    length = duration_samples(duration, sample_rate)
    waves, labels, names, bad = [], [], [], []
    rates: dict[int, int] = {}  # the files' own rates other than sample_rate, counted
    longest, cut, mixed = 0, 0, 0
    for file, label in zip(found.files, found.labels):
        try:
            rate, channels = file_header(file)
            wave = read_audio(file, sample_rate)
            if wave.abs().max() < SILENCE_PEAK:
                raise DataError(f"audio file {str(file)!r} is silent (peak "
                                f"{float(wave.abs().max()):.2g} < {SILENCE_PEAK})")
        except DataError as exc:
            bad.append((file, str(exc)))
            continue
        if rate != sample_rate:
            rates[rate] = rates.get(rate, 0) + 1
        if wave.shape[-1] > length:
            cut, longest = cut + 1, max(longest, wave.shape[-1])
        mixed += channels > 1
        waves.append(fit_length(wave, length))
        labels.append(label)
        names.append(str(file))
    report_bad_files(bad, skip_bad, f"audio folder {str(root)!r}")
    if split == "train" and (rates or cut or mixed):
        _say_what_was_changed(root, len(waves), sample_rate, rates, cut, longest / sample_rate,
                              duration, mixed)
    if not waves:
        raise DataError(f"audio folder {str(root)!r}: no usable audio files in split "
                        f"{split!r}")
    settings = {"n_fft": n_fft, "hop": hop, "window": window, "n_mels": n_mels,
                "f_min": f_min, "f_max": f_max, "mu": mu, "vocoder": vocoder}
    source = {"dataset": "audio:folder", "path": str(root), "split": split,
              "duration": duration}
    return _build(waves, labels if classes else None, classes, names, representation,
                  sample_rate, settings, source)
