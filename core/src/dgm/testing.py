"""Helpers for testing dgm plugins (the start of the conformance kit).

``registered_plugin`` adds a plugin object to the process-wide host for the duration of
a ``with`` block and removes it and its entries afterwards, so a test can register
throw-away entries without leaking them into other tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dgm.plugins import PluginHost, get_host


@contextmanager
def registered_plugin(plugin: object, name: str,
                      host: PluginHost | None = None) -> Iterator[PluginHost]:
    """Register ``plugin`` under ``name`` for the block; yields the host."""
    host = host or get_host()
    host.add_plugin(plugin, name, distribution="(test)", version="0")
    try:
        host.pm.check_pending()
        yield host
    finally:
        host.remove_plugin(name)
