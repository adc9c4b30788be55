"""Hooks the audio plugin declares for other plugins, through dgm's
``register_hookspecs`` hook: any plugin may implement them with ``@dgm.hookimpl``.
``register_vocoders`` adds the registry kind ``vocoders``."""

from __future__ import annotations

from collections.abc import Callable

from dgm import kind_hookspec


@kind_hookspec("vocoder")
def register_vocoders(register: Callable[..., None]) -> None:
    """Register vocoders: ways to turn a linear magnitude spectrogram back into sound.

    :param register: call ``register(name, vocoder, description="")`` where
        ``vocoder(linear, log_mel)`` takes a magnitude spectrogram ``(..., n_fft // 2 + 1,
        frames)`` and the :class:`dgm_audio.representations.LogMel` that made it and
        returns the waveform ``(..., frames * hop)`` in [-1, 1].

    Vocoders are registry entries of kind ``vocoders``, namespaced by plugin like every
    dgm entry (``audio:griffin-lim``) and listed by ``dgm plugins``; the log-mel
    representation's ``vocoder`` setting names the one its inverse uses.
    """
