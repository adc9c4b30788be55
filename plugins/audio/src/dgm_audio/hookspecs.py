"""Hooks the audio plugin declares for other plugins, through dgm's
``register_hookspecs`` hook: any plugin may implement them with ``@dgm.hookimpl``."""

from __future__ import annotations

from collections.abc import Callable

from dgm import hookspec


@hookspec
def register_vocoders(register: Callable[..., None]) -> None:
    """Register vocoders: ways to turn a linear magnitude spectrogram back into sound.

    :param register: call ``register(name, vocoder, description="")`` where
        ``vocoder(linear, log_mel)`` takes a magnitude spectrogram ``(..., n_fft // 2 + 1,
        frames)`` and the :class:`dgm_audio.representations.LogMel` that made it and
        returns the waveform ``(..., frames * hop)`` in [-1, 1].

    Called by :func:`dgm_audio.vocoders.vocoders` each time the table is needed; names
    are namespaced by plugin like every dgm entry (``audio:griffin-lim``).
    """
