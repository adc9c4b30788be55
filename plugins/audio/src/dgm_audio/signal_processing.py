"""The few signal-processing functions the audio plugin needs, on plain torch: a power
spectrogram, a mel filter bank and its least-squares inverse, Griffin-Lim, mu-law
companding and band-limited resampling.

dgm-audio does not use torchaudio: its compiled part loads only beside the torch build it
was made for (not beside a CPU-only torch, nor past torchaudio 2.11), so it would tie
dgm-audio to one torch. These functions follow the same definitions as torchaudio 2.11's
``MelSpectrogram`` (HTK mel scale, no filter normalisation), ``InverseMelScale``
(least squares), ``griffinlim`` (fast Griffin-Lim, Perraudin et al. 2013),
``mu_law_encoding``/``mu_law_decoding`` and ``resample`` (Hann-windowed sinc), and
tests/audio/test_signal_processing.py checks them against outputs recorded from it.

Every function takes any leading dimensions and works along the last one (time) or the
last two (frequency, frames).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

WindowFunction = Callable[[int], Tensor]


def _flat(x: Tensor, trailing: int) -> tuple[Tensor, torch.Size]:
    """``x`` reshaped to one leading dimension, and the leading shape to restore."""
    lead = x.shape[: x.dim() - trailing]
    return x.reshape(-1, *x.shape[x.dim() - trailing:]), lead


def power_spectrogram(wave: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """``|STFT|^2`` of ``wave (..., L)``: ``(..., n_fft // 2 + 1, L // hop + 1)`` frames
    centred on every ``hop``-th sample, the signal reflected at both ends."""
    flat, lead = _flat(wave, 1)
    spec = torch.stft(flat, n_fft, hop, n_fft, window.to(flat), center=True,
                      pad_mode="reflect", normalized=False, onesided=True,
                      return_complex=True)
    return spec.abs().pow(2).reshape(*lead, *spec.shape[-2:])


def hz_to_mel(hz: Tensor | float) -> Tensor:
    """The HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    """The inverse of :func:`hz_to_mel`."""
    return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)


def mel_filter_bank(n_freqs: int, f_min: float, f_max: float, n_mels: int,
                    sample_rate: int) -> Tensor:
    """Triangular filters ``(n_freqs, n_mels)`` evenly spaced on the mel scale between
    ``f_min`` and ``f_max``, each rising from its left neighbour's centre to its own and
    falling to its right neighbour's, with peak 1 (no area normalisation). Rows are the
    STFT bins ``0 .. sample_rate // 2``."""
    bins = torch.linspace(0, sample_rate // 2, n_freqs)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)),
                                     n_mels + 2))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - left) / (centre - left)
    falling = (right - bins[:, None]) / (right - centre)
    return torch.minimum(rising, falling).clamp_min(0.0)


def apply_filter_bank(spec: Tensor, bank: Tensor) -> Tensor:
    """``spec (..., n_freqs, frames)`` through ``bank (n_freqs, n_mels)``:
    ``(..., n_mels, frames)``."""
    return torch.einsum("...ft,fm->...mt", spec, bank.to(spec))


def invert_filter_bank(mel: Tensor, bank: Tensor) -> Tensor:
    """The non-negative least-squares-fitted spectrogram ``(..., n_freqs, frames)``
    whose filter-bank output is closest to ``mel (..., n_mels, frames)``: the minimum-norm
    solution of the underdetermined system, negative bins set to zero."""
    flat, lead = _flat(mel, 2)
    system = bank.T.to(flat)[None].expand(flat.shape[0], -1, -1)
    solution = torch.linalg.lstsq(system, flat, driver="gels").solution
    return solution.clamp_min(0.0).reshape(*lead, *solution.shape[-2:])


def griffin_lim(power: Tensor, window: Tensor, n_fft: int, hop: int, iterations: int,
                length: int, momentum: float = 0.99) -> Tensor:
    """A waveform ``(..., length)`` whose STFT magnitude matches ``power ** 0.5``
    (``power``: ``(..., n_fft // 2 + 1, frames)``), by fast Griffin-Lim (Perraudin,
    Balazs and Søndergaard, 2013): alternate projections between consistent
    spectrograms and the given magnitude, accelerated by ``momentum``, starting from
    zero phase (deterministic)."""
    flat, lead = _flat(power, 2)
    magnitude = flat.pow(0.5)
    window = window.to(magnitude)
    phase = torch.ones_like(magnitude, dtype=torch.complex64 if magnitude.dtype
                            == torch.float32 else torch.complex128)

    def wave_of(phase: Tensor) -> Tensor:
        return torch.istft(magnitude * phase, n_fft, hop, n_fft, window, length=length)

    previous = torch.zeros((), dtype=phase.dtype)
    for _ in range(iterations):
        rebuilt = torch.stft(wave_of(phase), n_fft, hop, n_fft, window, center=True,
                             pad_mode="reflect", normalized=False, onesided=True,
                             return_complex=True)
        ahead = rebuilt - previous * (momentum / (1.0 + momentum))
        phase = ahead / (ahead.abs() + 1e-16)
        previous = rebuilt
    return wave_of(phase).reshape(*lead, length)


def mu_law_encode(wave: Tensor, classes: int) -> Tensor:
    """Mu-law companding of ``wave`` in [-1, 1] (``mu = classes - 1``) to integer class
    indices ``0 .. classes - 1`` (int64), rounding to the nearest."""
    mu = torch.tensor(classes - 1.0, dtype=wave.dtype)
    companded = torch.sign(wave) * torch.log1p(mu * wave.abs()) / torch.log1p(mu)
    return ((companded + 1) / 2 * mu + 0.5).to(torch.int64)


def mu_law_decode(index: Tensor, classes: int) -> Tensor:
    """The waveform in [-1, 1] that class indices from :func:`mu_law_encode` stand for."""
    mu = torch.tensor(classes - 1.0)
    companded = index.float() / mu * 2 - 1.0
    return torch.sign(companded) * (torch.exp(companded.abs() * torch.log1p(mu)) - 1.0) / mu


def resample(wave: Tensor, from_rate: int, to_rate: int, zero_crossings: int = 6,
             rolloff: float = 0.99) -> Tensor:
    """``wave (..., L)`` resampled from ``from_rate`` to ``to_rate`` by band-limited
    interpolation: each output sample is the input convolved with a sinc low-pass at
    ``rolloff`` times the lower Nyquist rate, cut off after ``zero_crossings`` zero
    crossings by a Hann window. Output length ``ceil(L * to_rate / from_rate)``.

    With ``p = from_rate / g`` and ``q = to_rate / g`` (``g`` their gcd) the output is
    periodic in ``q`` phases, each a fixed FIR filter on the input taken ``p`` samples at a
    time: one strided convolution with ``q`` output channels."""
    if from_rate == to_rate:
        return wave
    common = math.gcd(int(from_rate), int(to_rate))
    p, q = int(from_rate) // common, int(to_rate) // common
    cutoff = min(p, q) * rolloff  # in units of the reduced input rate p
    half = math.ceil(zero_crossings * p / cutoff)  # filter half-width in input samples
    dtype = wave.dtype if wave.is_floating_point() else torch.float32
    taps = torch.arange(-half, half + p, dtype=dtype) / p  # input offsets, in p-periods
    phases = -torch.arange(q, dtype=dtype)[:, None] / q  # output sample k sits at k/q
    x = ((phases + taps) * cutoff).clamp(-zero_crossings, zero_crossings)
    window = torch.cos(x * (math.pi / (2 * zero_crossings))) ** 2
    x = x * math.pi
    sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)
    kernel = (sinc * window * (cutoff / p))[:, None, :]
    flat, lead = _flat(wave.to(dtype), 1)
    padded = torch.nn.functional.pad(flat, (half, half + p))
    out = torch.nn.functional.conv1d(padded[:, None], kernel, stride=p)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    length = math.ceil(q * flat.shape[-1] / p)
    return out[:, :length].reshape(*lead, -1)
