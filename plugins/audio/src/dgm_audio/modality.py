"""The audio modality: codec at the run's sample rate, the run's own representation and
its inverse, default networks and likelihood per representation, previews, metrics."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from dgm.contract import DataInfo, Modality
from dgm_audio.codec import read_audio, write_audio
from dgm_audio.previews import make_preview
from dgm_audio.representations import LogMel, from_metadata

DEFAULT_NETWORKS = {
    "log-mel": {"denoiser": "core:unet2d", "encoder": "audio:mel-encoder",
                "decoder": "audio:mel-decoder"},
    "waveform": {"encoder": "audio:wave-encoder", "decoder": "audio:wave-decoder",
                 "autoregressive": "audio:wavenet"},
    "mu-law": {"encoder": "audio:wave-encoder", "decoder": "audio:wave-decoder",
               "autoregressive": "audio:wavenet"},
}
DEFAULT_METRICS = {
    "log-mel": ["audio:log-spectral-distance", "audio:frechet-mel", "core:mmd"],
    "waveform": ["audio:mr-stft", "audio:log-spectral-distance", "audio:frechet-mel"],
    "mu-law": ["audio:mr-stft", "audio:log-spectral-distance", "audio:frechet-mel"],
}


def audio_modality(info: DataInfo | None = None) -> Modality:
    """Mono audio in the representation ``info.source["representation"]`` records
    (a 16 kHz waveform without one). Samples are inverted with the run's own settings
    and written as 16-bit WAV at its sample rate."""
    meta = (info.source.get("representation") if info else None) or {
        "kind": "waveform", "sample_rate": 16000}
    rep = from_metadata(meta)
    kind, rate = meta["kind"], meta["sample_rate"]
    hop = max(16, rate // 64)  # pictures of waveforms: about 16 ms frames, 32 mels
    display = LogMel(rate, n_fft=4 * hop, hop=hop, n_mels=32, f_min=0.0, f_max=rate / 2)

    def to_spectrogram(batch: Tensor) -> Tensor:
        if kind == "log-mel":
            return batch[:, 0]
        return display(rep.inverse(batch))[:, 0]

    def read(path: Path) -> Tensor:
        return rep.forward(read_audio(path, rate))

    def write(wave: Tensor, path: Path) -> None:
        write_audio(wave, path, rate)

    return Modality(
        name="audio:audio", read=read, write=write,
        preview=make_preview(to_spectrogram, ".wav"), file_suffix=".wav",
        representation=rep, networks=dict(DEFAULT_NETWORKS[kind]),
        likelihood="core:categorical" if kind == "mu-law" else "core:gaussian",
        metrics=list(DEFAULT_METRICS[kind]))
