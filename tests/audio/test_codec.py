"""Codec: WAV/FLAC round trips are bit-exact at 16 bits, mono mix-down, resampling."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from dgm.errors import DataError
from dgm_audio.codec import read_audio, resample, write_audio


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_16_bit_round_trip_is_bit_exact(tmp_path, suffix):
    pcm = np.random.default_rng(0).integers(-32768, 32768, size=4000, dtype=np.int16)
    source = tmp_path / f"source{suffix}"
    sf.write(source, pcm, 16000, subtype="PCM_16")
    wave = read_audio(source)
    copy = tmp_path / f"copy{suffix}"
    write_audio(wave, copy, 16000)
    back, rate = sf.read(copy, dtype="int16")
    assert rate == 16000 and sf.info(copy).subtype == "PCM_16"
    assert np.array_equal(back, pcm)


def test_written_wav_opens_in_sox_with_rate_and_length(tmp_path):
    path = tmp_path / "tone.wav"
    write_audio(0.5 * torch.sin(torch.arange(8000) / 5.0)[None], path, 8000)
    info = sf.info(path)
    assert (info.samplerate, info.frames, info.channels) == (8000, 8000, 1)
    if shutil.which("soxi"):
        out = subprocess.run(["soxi", str(path)], capture_output=True, text=True,
                             check=True).stdout
        assert "8000" in out and "16-bit" in out and "= 8000 samples" in out


def test_stereo_files_are_mixed_down_to_mono(tmp_path):
    left = np.full(100, 0.5, dtype=np.float32)
    right = np.full(100, -0.25, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="PCM_16")
    wave = read_audio(path)
    assert wave.shape == (1, 100)
    assert torch.allclose(wave, torch.full((1, 100), 0.125), atol=1e-4)


def test_resampling_keeps_a_sines_frequency():
    rate, freq = 16000, 440.0
    t = torch.arange(rate) / rate
    sine = torch.sin(2 * math.pi * freq * t)[None]
    low = resample(sine, rate, 8000)
    assert low.shape == (1, 8000)
    spectrum = torch.fft.rfft(low[0, 1000:-1000] * torch.hann_window(6000)).abs()
    peak_hz = float(spectrum.argmax()) * 8000 / 6000
    assert abs(peak_hz - freq) < 2.0


def test_reading_to_another_rate_resamples(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros(16000, dtype=np.float32) + 0.1, 16000, subtype="PCM_16")
    assert read_audio(path, 8000).shape == (1, 8000)


def test_unreadable_and_empty_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(DataError, match="broken.wav"):
        read_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000, subtype="PCM_16")
    with pytest.raises(DataError, match="empty.wav.*empty"):
        read_audio(empty)


def test_writing_an_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp3"):
        write_audio(torch.zeros(1, 10), tmp_path / "x.mp3", 8000)
