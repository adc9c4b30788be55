"""What models see of a waveform, each with its stated inverse and the metadata that
inverse depends on: the raw waveform, mu-law classes, and a log-mel spectrogram
(inverted by least squares through the mel filter bank, then Griffin-Lim).

Metadata travels with the data (``DataInfo.source["representation"]``) into the run
folder, so a run's samples are inverted with the settings it was trained with;
:func:`check_compatible` refuses to pair a model with an inverse whose settings differ.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dgm.contract import Representation
from dgm_audio import signal_processing as sp

Kind = Literal["waveform", "mu-law", "log-mel"]
KINDS: tuple[str, ...] = ("waveform", "mu-law", "log-mel")
WINDOWS = ("hann", "hamming")


class RepresentationMismatch(ValueError):
    """A model and an inverse (or two data sets) disagree on a representation setting."""


def check_compatible(model: dict[str, Any], inverse: dict[str, Any],
                     what: tuple[str, str] = ("the model", "the inverse")) -> None:
    """Raise :class:`RepresentationMismatch` naming every setting on which ``model`` and
    ``inverse`` metadata differ, with both values (e.g. n_mels=64 vs n_mels=80)."""
    keys = sorted(set(model) | set(inverse))
    diffs = [f"{k}={model.get(k)!r} for {what[0]} but {k}={inverse.get(k)!r} for {what[1]}"
             for k in keys if model.get(k) != inverse.get(k)]
    if diffs:
        raise RepresentationMismatch("representation settings disagree: " + "; ".join(diffs))


DEFAULT_VOCODER = "audio:griffin-lim"


def _window(name: str) -> Any:
    if name not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {name!r}")
    return torch.hann_window if name == "hann" else torch.hamming_window


class LogMel(nn.Module):
    """Waveform ``(1, L)`` to a normalised log-mel spectrogram ``(1, n_mels, L // hop)``
    and back. Values are ``(log(mel_power + floor) - log_center) / log_scale`` so speech
    lies roughly in [-1, 1]; the inverse undoes that, maps mel power to a linear
    spectrogram (least squares through the filter bank) and turns that into sound with the
    registered vocoder named ``vocoder`` (default: Griffin-Lim), looked up when
    inverting."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, f_min: float,
                 f_max: float, window: str = "hann", floor: float = 1e-5,
                 log_center: float = -1.5, log_scale: float = 10.0,
                 griffin_lim_iters: int = 32, vocoder: str = DEFAULT_VOCODER) -> None:
        super().__init__()
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2; got f_min={f_min}, "
                             f"f_max={f_max}, sample_rate={sample_rate}")
        if hop < 1 or n_fft < hop or n_mels < 1:
            raise ValueError(f"need n_fft >= hop >= 1 and n_mels >= 1; got n_fft={n_fft}, "
                             f"hop={hop}, n_mels={n_mels}")
        self.hop, self.floor = hop, floor
        self.log_center, self.log_scale = log_center, log_scale
        self.n_fft, self.griffin_lim_iters = n_fft, griffin_lim_iters
        self.vocoder = vocoder
        self.register_buffer("window", _window(window)(n_fft), persistent=False)
        self.register_buffer("filter_bank", sp.mel_filter_bank(n_fft // 2 + 1, f_min, f_max,
                                                               n_mels, sample_rate),
                             persistent=False)

    @torch.no_grad()
    def forward(self, wave: Tensor) -> Tensor:
        frames = wave.shape[-1] // self.hop
        power = sp.power_spectrogram(wave.float(), self.n_fft, self.hop, self.window)
        mel = sp.apply_filter_bank(power, self.filter_bank)[..., :frames]
        return (torch.log(mel + self.floor) - self.log_center) / self.log_scale

    @torch.no_grad()
    def invert(self, log_mel: Tensor) -> Tensor:
        mel = (torch.exp(log_mel.float() * self.log_scale + self.log_center)
               - self.floor).clamp_min(0.0)
        linear = sp.invert_filter_bank(mel, self.filter_bank)
        if self.vocoder == DEFAULT_VOCODER:  # no registry needed for the plugin's own
            return griffin_lim(linear, self)
        from dgm_audio.vocoders import vocoder

        return vocoder(self.vocoder, where="[data] vocoder")(linear, self)


@torch.no_grad()
def griffin_lim(linear: Tensor, log_mel: LogMel) -> Tensor:
    """The audio plugin's vocoder (registered as ``audio:griffin-lim``): phase from
    Griffin-Lim for a magnitude spectrogram of ``frames`` frames made by ``log_mel``."""
    frames = linear.shape[-1]
    # Griffin-Lim on frames + 1 (the centred last frame, dropped by forward, repeated)
    linear = torch.cat([linear, linear[..., -1:]], dim=-1)
    wave = sp.griffin_lim(linear, log_mel.window, log_mel.n_fft, log_mel.hop,
                          log_mel.griffin_lim_iters, frames * log_mel.hop)
    return wave.clamp(-1.0, 1.0)


def make_representation(kind: Kind = "log-mel", sample_rate: int = 8000, n_fft: int = 512,
                        hop: int = 128, window: str = "hann", n_mels: int = 32,
                        f_min: float = 0.0, f_max: float | None = None, mu: int = 255,
                        griffin_lim_iters: int = 32,
                        vocoder: str = DEFAULT_VOCODER) -> Representation:
    """The representation ``kind`` with its settings recorded in ``metadata``.

    - ``waveform``: the samples themselves in [-1, 1].
    - ``mu-law``: mu-law companding to ``mu + 1`` classes, mapped onto the
      evenly spaced grid of ``mu + 1`` values in [-1, 1] (so categorical and discretized
      likelihoods with ``levels = mu + 1`` model it); the inverse expands it back.
    - ``log-mel``: see :class:`LogMel`; ``vocoder`` names the registered vocoder of its
      inverse.
    """
    if kind not in KINDS:
        raise ValueError(f"representation must be one of {', '.join(KINDS)}, got {kind!r}")
    meta: dict[str, Any] = {"kind": kind, "sample_rate": int(sample_rate)}
    if kind == "waveform":
        return Representation("waveform", metadata=meta)
    if kind == "mu-law":
        if mu < 1:
            raise ValueError(f"mu must be at least 1, got {mu}")
        meta["mu"] = int(mu)
        classes = mu + 1

        def encode(wave: Tensor) -> Tensor:
            index = sp.mu_law_encode(wave.float().clamp(-1, 1), classes)
            return index.float() * (2.0 / mu) - 1.0

        def decode(values: Tensor) -> Tensor:
            index = torch.round((values.float().clamp(-1, 1) + 1.0) * (mu / 2.0)).long()
            return sp.mu_law_decode(index, classes)

        return Representation("mu-law", encode, decode, meta)
    f_max = float(f_max if f_max is not None else sample_rate / 2)
    meta.update({"n_fft": int(n_fft), "hop": int(hop), "window": window,
                 "n_mels": int(n_mels), "f_min": float(f_min), "f_max": f_max})
    log_mel = LogMel(sample_rate, n_fft, hop, n_mels, f_min, f_max, window,
                     griffin_lim_iters=griffin_lim_iters, vocoder=vocoder)
    meta.update({"floor": log_mel.floor, "log_center": log_mel.log_center,
                 "log_scale": log_mel.log_scale, "vocoder": vocoder})
    return Representation("log-mel", log_mel.forward, log_mel.invert, meta)


def from_metadata(meta: dict[str, Any]) -> Representation:
    """Rebuild a representation from its recorded ``metadata``; the rebuilt one's own
    metadata must match, else the recorded run used settings this version cannot
    reproduce."""
    if meta.get("kind") == "log-mel":  # recorded before vocoders were chosen by name
        meta = {"vocoder": DEFAULT_VOCODER, **meta}
    settings = {k: meta[k] for k in ("sample_rate", "n_fft", "hop", "window", "n_mels",
                                      "f_min", "f_max", "mu", "vocoder") if k in meta}
    rep = make_representation(meta.get("kind", "waveform"), **settings)
    check_compatible(meta, rep.metadata, ("the run's data", "this dgm-audio's inverse"))
    return rep


def duration_samples(duration: float, sample_rate: int) -> int:
    """The number of samples in ``duration`` seconds at ``sample_rate``."""
    return int(math.floor(duration * sample_rate + 0.5))
