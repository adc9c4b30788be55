"""The vocoders plugins register through the audio plugin's ``register_vocoders`` hook:
registry entries of kind ``vocoders``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KIND = "vocoders"


def vocoders() -> dict[str, Callable[..., Any]]:
    """Every registered vocoder by full name (``plugin:name``)."""
    from dgm.plugins import get_registry

    return {entry.name: entry.obj for entry in get_registry().entries(KIND)}


def vocoder(name: str, where: str = "") -> Callable[..., Any]:
    """The vocoder registered as ``name`` (full or bare); an unknown name is a
    :class:`dgm.errors.RegistryError` listing the registered ones."""
    from dgm.plugins import get_registry

    return get_registry().get(KIND, name, where=where).obj
