"""Audio files to tensors and back: WAV and FLAC through soundfile, mono mix-down,
band-limited resampling, 16-bit PCM output."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from dgm.errors import DataError
from dgm_audio.signal_processing import resample as band_limited_resample

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def read_audio(path: Path, sample_rate: int | None = None) -> Tensor:
    """A file as a mono waveform ``(1, L)`` float32 in [-1, 1], mixed down from any
    number of channels and resampled to ``sample_rate`` (the file's rate if None).
    Unreadable, empty or truncated files (a WAV with fewer samples than its header
    declares) raise :class:`DataError` naming the file."""
    path = Path(path)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"cannot read audio file {str(path)!r}: {exc}") from None
    if audio.shape[0] == 0:
        raise DataError(f"audio file {str(path)!r} is empty (0 samples)")
    declared = declared_wav_frames(path)
    if declared is not None and declared > audio.shape[0]:
        raise DataError(f"audio file {str(path)!r} is truncated: its header declares "
                        f"{declared} samples, {audio.shape[0]} are present")
    wave = mix_down(torch.from_numpy(np.ascontiguousarray(audio.T)))
    return resample(wave, rate, sample_rate or rate)


def declared_wav_frames(path: Path) -> int | None:
    """The sample count a PCM WAV file's header declares (libsndfile reports what is
    present instead); None for other files."""
    if path.suffix.lower() != ".wav":
        return None
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes()
    except (wave.Error, EOFError, OSError):  # not PCM (float WAV, ...): nothing declared
        return None


def mix_down(wave: Tensor) -> Tensor:
    """``(channels, L)`` to mono ``(1, L)`` by averaging the channels."""
    return wave.mean(dim=0, keepdim=True)


def resample(wave: Tensor, from_rate: int, to_rate: int) -> Tensor:
    """Band-limited (Hann-windowed sinc) resampling along the last dimension."""
    if from_rate == to_rate:
        return wave
    return band_limited_resample(wave, int(from_rate), int(to_rate))


def write_audio(wave: Tensor, path: Path, sample_rate: int) -> None:
    """Write a waveform ``(L,)`` or ``(channels, L)`` in [-1, 1] as 16-bit PCM WAV or
    FLAC (chosen by the suffix). Samples scale by 32768 (soundfile's own convention), so
    reading a 16-bit file and writing it back is bit-exact; values beyond full scale are
    clipped."""
    path = Path(path)
    kind = WRITE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"cannot write {str(path)!r}: the suffix should be one of "
                         f"{', '.join(sorted(WRITE_FORMATS))}")
    data = wave.detach().float().cpu()
    if data.dim() == 1:
        data = data[None]
    if data.dim() != 2:
        raise ValueError(f"expected a waveform shaped (L,) or (channels, L), got "
                         f"{tuple(wave.shape)}")
    pcm = torch.round(data * 32768).clamp(-32768, 32767).to(torch.int16).T.contiguous().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, int(sample_rate), format=kind, subtype="PCM_16")
