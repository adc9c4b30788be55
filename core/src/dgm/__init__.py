"""dgm: deep generative modelling across modalities behind one contract.

Importing ``dgm`` loads no plugin: the registry is built on first use
(:func:`dgm.plugins.get_registry`).
"""

from collections.abc import Callable
from typing import Any

import pluggy

__version__ = "0.2.0"

hookspec = pluggy.HookspecMarker("dgm")
"""Marker for hook specifications (used by :mod:`dgm.hookspecs`)."""

hookimpl = pluggy.HookimplMarker("dgm")
"""Marker for plugin hook implementations: ``@dgm.hookimpl``."""



def kind_hookspec(singular: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``register_<kind>(register)`` as a hookspec that adds a registry kind:
    what plugins register through it becomes registry entries of ``<kind>``
    (``plugin:name``), listed by ``dgm plugins`` and found by
    ``get_registry().get(kind, name)``, like the core's kinds. ``singular`` names one
    entry in messages (``"vocoder"``). Declare it from ``register_hookspecs``."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        if not function.__name__.startswith("register_"):
            raise ValueError(f"a kind's hookspec is called register_<kind>, got "
                             f"{function.__name__!r}")
        function.dgm_registry_kind = singular  # type: ignore[attr-defined]
        return hookspec(function)

    return mark


__all__ = ["__version__", "hookimpl", "hookspec", "kind_hookspec"]
