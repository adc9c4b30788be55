"""Make the embedded data set ``audio:spoken-digits`` with espeak-ng.

The English words "zero" to "nine", spoken by many espeak-ng voices (a voice is a
language's pronunciation rules plus a voice variant: "en-us+m3", "de+f2", ...) at
several speeds and pitches, resampled to 16 kHz mono, trimmed of leading and trailing
silence, peak-normalised, and stored as 16-bit FLAC inside the dgm_audio package, with a
manifest ``manifest.csv`` (file, digit, word, voice, speed, pitch, split, samples).

The split is by voice, so the test voices are never heard in training: every voice's 20
clips (10 words x 2 speed/pitch settings) go to one split.

Deterministic: espeak-ng's synthesis is deterministic and every choice below is fixed
(no random numbers), so running it again rewrites the same files. Needs espeak-ng
(Debian: ``apt-get install espeak-ng``) and the dev environment's Python::

    OMP_NUM_THREADS=1 .venv/bin/python plugins/audio/scripts/make_spoken_digits.py

It takes about a minute and writes about 7 MB (800 clips).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dgm_audio.signal_processing import resample

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SAMPLE_RATE = 16000
MAX_SECONDS = 1.0
PEAK = 0.89
SILENCE_DB = -35.0
"""A 10 ms frame is silent when its RMS is this far below the clip's loudest frame."""

LANGUAGES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
             "en-gb-x-gbcwmd", "en-029", "en-us-nyc", "de", "nl", "af", "sv", "da", "nb",
             "fr-fr", "es", "it", "pt", "pl", "cs", "fi", "hu", "ro", "id"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "croak", "whisper"]
N_VOICES = 40
SETTINGS = [(145, 35), (195, 70)]
"""(speed in words per minute, pitch 0-99): slow and low, fast and high."""
SPLIT_CYCLE = ["train", "train", "train", "test", "train", "train", "val", "train", "train",
               "test"]
"""Voice i goes to SPLIT_CYCLE[i % 10]: 7 of every 10 voices train, 1 val, 2 test."""


def voices() -> list[str]:
    """N_VOICES distinct language+variant pairs, languages and variants interleaved so
    each split hears many languages and variants."""
    return [f"{LANGUAGES[i % len(LANGUAGES)]}+{VARIANTS[(i * 7) % len(VARIANTS)]}"
            for i in range(N_VOICES)]


def speak(word: str, voice: str, speed: int, pitch: int, workdir: Path) -> np.ndarray:
    """espeak-ng's rendering of ``word`` as float32 samples at SAMPLE_RATE."""
    wav = workdir / "say.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                    "-w", str(wav), word], check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    mono = torch.from_numpy(audio.mean(axis=1))
    return resample(mono, rate, SAMPLE_RATE).numpy()


def trim(audio: np.ndarray) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames below SILENCE_DB of the peak
    frame), keep at most MAX_SECONDS, and scale the peak to PEAK."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > SILENCE_DB)
    start, stop = loud[0] * frame, (loud[-1] + 1) * frame
    clip = audio[start:stop][: int(MAX_SECONDS * SAMPLE_RATE)]
    return clip * (PEAK / np.abs(clip).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                        / "src" / "dgm_audio" / "data" / "spoken_digits")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.flac"):
        old.unlink()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v, voice in enumerate(voices()):
            split = SPLIT_CYCLE[v % len(SPLIT_CYCLE)]
            for speed, pitch in SETTINGS:
                for digit, word in enumerate(WORDS):
                    clip = trim(speak(word, voice, speed, pitch, Path(tmp)))
                    name = f"{digit}_{voice.replace('+', '_')}_s{speed}_p{pitch}.flac"
                    sf.write(args.out / name, clip, SAMPLE_RATE, subtype="PCM_16")
                    rows.append({"file": name, "digit": digit, "word": word, "voice": voice,
                                 "speed": speed, "pitch": pitch, "split": split,
                                 "samples": len(clip)})
    with open(args.out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    print(f"wrote {len(rows)} clips ({counts}) to {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
