"""Weight-free distances between a set of generated clips and a set of real ones.

Each works on a batch in an audio representation: waveforms ``(N, 1, L)`` (raw, or
mu-law values: then on the companded signal, the same way for both sets) are analysed
with short-time Fourier transforms at fixed sizes; log-mel spectrograms
``(N, 1, n_mels, frames)`` are used as the log spectra they are (their units are the
representation's normalised log power). The sets are unpaired, so each metric compares
statistics of the two sets' spectra, and is 0 for identical sets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from dgm.metrics import Metric

EPS = 1e-8
ANALYSIS = (256, 64)
"""(n_fft, hop) of the STFT that turns waveforms into log spectra."""
BANDS = 32
"""Waveform spectra are averaged into this many equal-width bands for frechet-mel."""


def _check(x: Tensor, what: str) -> Tensor:
    if x.dim() not in (3, 4) or x.shape[1] != 1:
        raise ValueError(f"{what}: expected mono waveforms (N, 1, L) or spectrograms "
                         f"(N, 1, n_mels, frames), got {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def power_spectra(wave: Tensor, n_fft: int, hop: int) -> Tensor:
    """|STFT|^2 of ``(N, 1, L)`` waveforms: ``(N, frames, n_fft // 2 + 1)``."""
    spec = torch.stft(wave[:, 0], n_fft, hop, window=torch.hann_window(n_fft,
                      dtype=wave.dtype), return_complex=True)
    return rearrange(spec.abs() ** 2, "n f t -> n t f")


def log_frames(x: Tensor, bands: int | None = None) -> Tensor:
    """Every frame's log spectrum, ``(N * frames, bins)``: from the STFT (optionally
    averaged into ``bands``) for waveforms, the columns of a log-mel as given."""
    if x.dim() == 4:
        return rearrange(x[:, 0], "n m t -> (n t) m")
    power = power_spectra(x, *ANALYSIS)
    if bands:
        power = F.adaptive_avg_pool1d(power, bands)
    return rearrange(torch.log(power + EPS), "n t f -> (n t) f")


def mr_stft_distance(x: Tensor, y: Tensor,
                     resolutions: Sequence[tuple[int, int]] = ((512, 128), (256, 64),
                                                               (128, 32))) -> float:
    """Multi-resolution STFT distance between two sets of waveforms: at each (n_fft, hop),
    the spectral convergence of the sets' mean magnitude spectra plus the mean absolute
    difference of the per-frequency mean and standard deviation of log magnitude over
    all frames; averaged over resolutions."""
    a, b = _check(x, "mr-stft"), _check(y, "mr-stft")
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError("mr-stft needs waveforms (N, 1, L); for log-mel data use "
                         "audio:log-spectral-distance and audio:frechet-mel")
    total = 0.0
    for n_fft, hop in resolutions:
        mags = [power_spectra(t, n_fft, hop).sqrt() for t in (a, b)]
        means = [m.mean(dim=(0, 1)) for m in mags]
        convergence = (means[0] - means[1]).norm() / means[1].norm().clamp_min(EPS)
        logs = [torch.log(m + EPS).flatten(0, 1) for m in mags]
        log_mean = (logs[0].mean(0) - logs[1].mean(0)).abs().mean()
        log_std = (logs[0].std(0) - logs[1].std(0)).abs().mean()
        total += float(convergence + log_mean + log_std)
    return total / len(resolutions)


def log_spectral_distance(x: Tensor, y: Tensor) -> float:
    """Root mean square over frequencies of the difference between the two sets'
    average log power spectra: in dB for waveforms, in representation units for
    log-mel data."""
    a, b = log_frames(_check(x, "log-spectral-distance")), log_frames(
        _check(y, "log-spectral-distance"))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"log-spectral-distance: {a.shape[1]} and {b.shape[1]} frequency "
                         "bins differ")
    if x.dim() == 4:
        diff = a.mean(0) - b.mean(0)
    else:  # average the power, not the log, then convert to dB
        diff = 10 * (torch.log10(a.exp().mean(0)) - torch.log10(b.exp().mean(0)))
    return float(diff.square().mean().sqrt())


def _sqrtm_psd(m: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh((m + m.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = (mu_a - mu_b).square().sum() + torch.trace(cov_a + cov_b - 2 * cross)
    return float(value.clamp_min(0))


def frechet_mel(x: Tensor, y: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the per-frame log spectra of the two
    sets (log-mel columns, or STFT log power in 32 bands for waveforms)."""
    a = log_frames(_check(x, "frechet-mel"), BANDS)
    b = log_frames(_check(y, "frechet-mel"), BANDS)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("frechet-mel: needs at least 2 frames per set")
    return frechet_distance(a, b)


def mr_stft() -> Metric:
    """Multi-resolution STFT distance between sets (see :func:`mr_stft_distance`)."""
    return Metric(mr_stft_distance)


def log_spectral() -> Metric:
    """Log-spectral distance between the sets' average spectra."""
    return Metric(log_spectral_distance)


def frechet_mel_metric() -> Metric:
    """Fréchet distance on per-frame log spectra (see :func:`frechet_mel`)."""
    return Metric(frechet_mel)


__all__ = ["frechet_distance", "frechet_mel", "log_spectral_distance", "mr_stft_distance"]
