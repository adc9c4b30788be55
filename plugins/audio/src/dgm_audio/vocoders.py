"""The vocoders plugins register through the audio plugin's ``register_vocoders`` hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dgm.errors import RegistryError


def vocoders() -> dict[str, Callable[..., Any]]:
    """Every registered vocoder by full name (``plugin:name``), asking each plugin."""
    from dgm.plugins import get_host

    host = get_host()
    found: dict[str, Callable[..., Any]] = {}
    for impl in host.pm.hook.register_vocoders.get_hookimpls():

        def register(name: str, vocoder: Callable[..., Any], description: str = "",
                     _plugin: str = impl.plugin_name) -> None:
            full = name if ":" in name else f"{_plugin}:{name}"
            if full in found:
                raise RegistryError(f"vocoder name clash: {full!r} registered twice")
            found[full] = vocoder

        impl.function(register=register)
    return found
