"""dgm_audio.signal_processing against torchaudio 2.11's outputs, recorded once into
tests/audio/reference/ (so these run where torchaudio cannot be imported), and live
against torchaudio itself where it can."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dgm_audio import signal_processing as sp
from dgm_audio.codec import read_audio
from dgm_audio.datasets import DIGITS_DIR, fit_length
from dgm_audio.representations import make_representation

REFERENCE = Path(__file__).parent / "reference" / "torchaudio_reference.safetensors"
RATE, LENGTH, N_FFT, HOP, N_MELS, ITERS = 8000, 8192, 512, 128, 32, 32


def torchaudio_loads() -> bool:
    """Whether torchaudio imports here: beside a CPU-only torch, or a torch other than the
    one it was built for, its compiled part fails to load (OSError)."""
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(REFERENCE)


@pytest.fixture(scope="module")
def files() -> list[str]:
    with safe_open(REFERENCE, "pt") as handle:
        return handle.metadata()["files"].split(",")


def spectral_convergence(target_power: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(N_FFT)
    rebuilt = sp.power_spectrogram(wave, N_FFT, HOP, window).sqrt()
    target = target_power.sqrt()
    return torch.linalg.norm(rebuilt - target) / torch.linalg.norm(target)


def test_reading_and_resampling_the_embedded_clips_matches(reference, files):
    for i, name in enumerate(files):
        wave = fit_length(read_audio(DIGITS_DIR / name, RATE), LENGTH)
        assert (wave - reference[f"wave_{i}"]).abs().max() < 1e-5


def test_resampling_to_rates_with_a_large_period_matches(reference):
    raw = reference["raw_16k_0"][:, :4096]
    for rate in (22050, 11025):
        ours = sp.resample(raw, 16000, rate)
        theirs = reference[f"resampled_16k_to_{rate}_0"]
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() < 1e-5


def test_log_mel_of_the_embedded_clips_is_within_1e_4(reference):
    log_mel = make_representation("log-mel", sample_rate=RATE, n_fft=N_FFT, hop=HOP,
                                  n_mels=N_MELS)
    for i in range(4):
        ours = log_mel.forward(reference[f"wave_{i}"])
        assert ours.shape == reference[f"log_mel_{i}"].shape == (1, N_MELS, LENGTH // HOP)
        assert (ours - reference[f"log_mel_{i}"]).abs().max() <= 1e-4


def test_the_filter_bank_and_its_least_squares_inverse_match(reference):
    bank = sp.mel_filter_bank(N_FFT // 2 + 1, 0.0, RATE / 2, N_MELS, RATE)
    torch.testing.assert_close(bank, reference["filter_bank"], atol=1e-6, rtol=1e-5)
    wave = reference["wave_0"]
    mel = sp.apply_filter_bank(sp.power_spectrogram(wave, N_FFT, HOP, torch.hann_window(N_FFT)),
                               bank)
    ours, theirs = sp.invert_filter_bank(mel, bank), reference["inverse_mel_0"]
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_griffin_lim_converges_within_1_percent_of_torchaudio(reference):
    window = torch.hann_window(N_FFT)
    for i in range(4):
        target = sp.power_spectrogram(reference[f"wave_{i}"], N_FFT, HOP, window)
        wave = sp.griffin_lim(target, window, N_FFT, HOP, ITERS, LENGTH)
        ours = spectral_convergence(target, wave)
        theirs = reference[f"griffin_lim_convergence_{i}"]
        assert 0 < theirs < 1
        assert abs(ours - theirs) <= 0.01 * theirs, (i, float(ours), float(theirs))


def test_more_griffin_lim_iterations_converge_further(reference):
    window = torch.hann_window(N_FFT)
    target = sp.power_spectrogram(reference["wave_0"], N_FFT, HOP, window)
    few, many = (spectral_convergence(target, sp.griffin_lim(target, window, N_FFT, HOP,
                                                             n, LENGTH)) for n in (4, 64))
    assert many < 0.8 * few


def test_mu_law_matches_exactly(reference):
    assert torch.equal(sp.mu_law_encode(reference["mu_law_grid"], 256),
                       reference["mu_law_encoded"])
    torch.testing.assert_close(sp.mu_law_decode(torch.arange(256), 256),
                               reference["mu_law_decoded"], atol=1e-7, rtol=0)


def test_leading_dimensions_are_kept():
    wave = torch.randn(2, 3, 1, 2048)
    window = torch.hann_window(256)
    power = sp.power_spectrogram(wave, 256, 64, window)
    assert power.shape == (2, 3, 1, 129, 33)
    assert torch.allclose(power[1, 2], sp.power_spectrogram(wave[1, 2], 256, 64, window))
    assert sp.resample(wave, 8000, 12000).shape == (2, 3, 1, 3072)
    assert sp.griffin_lim(power, window, 256, 64, 2, 2048).shape == wave.shape


@pytest.mark.skipif(not torchaudio_loads(), reason="torchaudio does not load here")
def test_live_against_torchaudio_on_random_settings():
    import torchaudio.functional as AF
    import torchaudio.transforms as T

    generator = torch.Generator().manual_seed(0)
    wave = torch.randn(3, 4000, generator=generator) * 0.3
    for rate, n_fft, hop, n_mels, f_min in [(8000, 256, 64, 20, 50.0),
                                            (16000, 512, 160, 40, 0.0)]:
        bank = sp.mel_filter_bank(n_fft // 2 + 1, f_min, rate / 2, n_mels, rate)
        torch.testing.assert_close(bank, AF.melscale_fbanks(n_fft // 2 + 1, f_min, rate / 2,
                                                            n_mels, rate),
                                   atol=1e-6, rtol=1e-5)
        window = torch.hann_window(n_fft)
        ours = sp.apply_filter_bank(sp.power_spectrogram(wave, n_fft, hop, window), bank)
        theirs = T.MelSpectrogram(rate, n_fft=n_fft, hop_length=hop, f_min=f_min,
                                  n_mels=n_mels)(wave)
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    for source, target in [(8000, 16000), (44100, 16000), (16000, 8000), (48000, 22050)]:
        torch.testing.assert_close(sp.resample(wave, source, target),
                                   AF.resample(wave, source, target), atol=1e-5, rtol=0)
