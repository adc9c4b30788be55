"""dgm: deep generative modelling across modalities behind one contract.

Importing ``dgm`` loads no plugin: the registry is built on first use
(:func:`dgm.plugins.get_registry`).
"""

import pluggy

__version__ = "0.1.0"

hookspec = pluggy.HookspecMarker("dgm")
"""Marker for hook specifications (used by :mod:`dgm.hookspecs`)."""

hookimpl = pluggy.HookimplMarker("dgm")
"""Marker for plugin hook implementations: ``@dgm.hookimpl``."""

__all__ = ["__version__", "hookimpl", "hookspec"]
