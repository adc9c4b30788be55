"""Registers the audio modality's entries with dgm (entry point ``audio``)."""

from __future__ import annotations

from dgm import hookimpl
from dgm.hookspecs import Register
from dgm_audio import datasets, hookspecs, metrics, networks
from dgm_audio.modality import audio_modality
from dgm_audio.representations import griffin_lim


@hookimpl
def register_hookspecs(register) -> None:
    register(hookspecs)  # register_vocoders, for other plugins


@hookimpl
def register_vocoders(register) -> None:
    register("griffin-lim", griffin_lim, "Griffin-Lim phase recovery")


@hookimpl
def register_modalities(register: Register) -> None:
    register("audio", audio_modality, "Mono audio as waveform, mu-law or log-mel; WAV "
             "codec; spectrogram grids and a listening page")


@hookimpl
def register_datasets(register: Register) -> None:
    register("spoken-digits", datasets.spoken_digits, "zero..nine by 40 espeak-ng voices, "
             "16 kHz FLAC, split by voice: 560/80/160 clips")
    register("folder", datasets.folder, "Your own recordings from a folder; labels from "
             "sub-folders")


@hookimpl
def register_networks(register: Register) -> None:
    register("wave-encoder", networks.WaveEncoder, "1-D strided conv encoder for waveforms")
    register("wave-decoder", networks.WaveDecoder, "1-D transposed conv decoder for waveforms")
    register("mel-encoder", networks.MelEncoder, "2-D conv encoder for log-mel spectrograms")
    register("mel-decoder", networks.MelDecoder, "2-D transposed conv decoder for log-mel")
    register("wavenet", networks.WaveNet, "WaveNet-style gated causal dilated conv stack "
             "(autoregressive, mu-law)")


@hookimpl
def register_metrics(register: Register) -> None:
    register("mr-stft", metrics.mr_stft, "Multi-resolution STFT distance between sets of "
             "waveforms")
    register("log-spectral-distance", metrics.log_spectral, "RMS difference of the sets' "
             "average log spectra (dB for waveforms)")
    register("frechet-mel", metrics.frechet_mel_metric, "Frechet distance on per-frame log "
             "spectra")
