"""Namespaced registry of everything plugins contribute.

Entries are named ``namespace:name``; the namespace is the registering plugin's name
(its entry-point name). Lookups accept the full name, or the bare name when exactly one
namespace provides it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dgm.errors import RegistryError

KINDS = ("modalities", "families", "likelihoods", "priors", "networks", "datasets", "metrics",
         "recipes")
"""The core's kinds of thing a plugin can register, one ``register_<kind>`` hook each.
A plugin adds kinds of its own with :func:`dgm.kind_hookspec` (the audio plugin's
``vocoders``); :attr:`Registry.kinds` lists them all."""

SINGULAR = {"modalities": "modality", "families": "family", "likelihoods": "likelihood",
            "priors": "prior", "networks": "network", "datasets": "dataset",
            "metrics": "metric", "recipes": "recipe"}
"""The core kinds' singular names, for messages."""

KIND_MARK = "dgm_registry_kind"
"""The attribute :func:`dgm.kind_hookspec` sets on a ``register_<kind>`` hookspec: the
kind's singular name."""


@dataclass(frozen=True)
class Entry:
    """One registered thing: its full name, the object, the plugin that registered it."""

    kind: str
    name: str
    obj: Any
    plugin: str
    description: str = ""

    @property
    def short_name(self) -> str:
        return self.name.split(":", 1)[1]


class Registry:
    """All registered entries, by kind. The host owns validation and de-duplication."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._singular: dict[str, str] = dict(SINGULAR)
        self.kind_declared_by: dict[str, str] = {}
        """The kinds plugins added, with the plugin that declared each."""
        self.failed_plugins: dict[str, str] = {}
        """Plugins that failed to load, with their error: named in unknown-name errors."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind: the core's, then those plugins declared, in declaration order."""
        return tuple(self._entries)

    def singular(self, kind: str) -> str:
        """``"vocoder"`` for ``"vocoders"``: how messages name one entry of a kind."""
        return self._singular.get(kind, kind)

    def kind_of(self, singular: str) -> str:
        """The kind whose singular name is ``singular`` (``"network"`` -> ``"networks"``)."""
        for kind, name in self._singular.items():
            if name == singular:
                return kind
        raise RegistryError(f"unknown kind {singular!r}; kinds are: "
                            f"{', '.join(self._singular[k] for k in self.kinds)}")

    def add_kind(self, kind: str, singular: str, plugin: str) -> bool:
        """Let plugins register ``kind`` (declared by ``plugin``); False if it exists."""
        if kind in self._entries:
            return False
        if not kind.isidentifier() or not singular:
            raise RegistryError(f"plugin {plugin!r} declared an invalid kind {kind!r}: "
                                "expected the plural noun of register_<kind>, e.g. vocoders")
        self._entries[kind] = {}
        self._singular[kind] = singular
        self.kind_declared_by[kind] = plugin
        return True

    def add(self, kind: str, name: str, obj: Any, plugin: str, description: str = "") -> Entry:
        """Add ``obj`` as ``plugin:name``. A name may be written already namespaced, but
        only in the plugin's own namespace: a plugin owns its names, and no plugin can
        take another's, whichever loads first."""
        if kind not in self._entries:
            raise RegistryError(f"unknown kind {kind!r}; kinds are: {', '.join(self.kinds)}")
        if not isinstance(name, str) or not name or name.count(":") > 1:
            raise RegistryError(
                f"plugin {plugin!r} registered {self.singular(kind)} with an invalid name "
                f"{name!r}: expected a non-empty string like 'digits' or 'image:digits'"
            )
        namespace, _, bare = name.rpartition(":")
        if namespace and namespace != plugin:
            owner = "dgm's core" if namespace == "core" else f"plugin {namespace!r}"
            raise RegistryError(
                f"plugin {plugin!r} registered {self.singular(kind)} {name!r}, a name in "
                f"namespace {namespace!r}, which belongs to {owner}; refused. A plugin "
                f"registers names only in its own namespace: register {bare!r} (found as "
                f"{plugin + ':' + bare!r})"
            )
        full = f"{plugin}:{bare}"
        existing = self._entries[kind].get(full)
        if existing is not None:
            raise RegistryError(
                f"{self.singular(kind)} name clash: {full!r} is registered by plugin "
                f"{existing.plugin!r} and again by plugin {plugin!r}; the first registration "
                "is kept"
            )
        entry = Entry(kind, full, obj, plugin, description)
        self._entries[kind][full] = entry
        return entry

    def remove_plugin(self, plugin: str) -> None:
        """Drop every entry ``plugin`` registered, and the kinds it declared."""
        for table in self._entries.values():
            for key in [k for k, e in table.items() if e.plugin == plugin]:
                del table[key]
        for kind in [k for k, p in self.kind_declared_by.items() if p == plugin]:
            del self._entries[kind], self._singular[kind], self.kind_declared_by[kind]
        self.failed_plugins.pop(plugin, None)

    def entries(self, kind: str) -> list[Entry]:
        """A kind's entries by name; a kind no loaded plugin declares has none."""
        return sorted(self._entries.get(kind, {}).values(), key=lambda e: e.name)

    def __iter__(self) -> Iterator[Entry]:
        for kind in self.kinds:
            yield from self.entries(kind)

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        """What one plugin registered: kind -> full names."""
        out: dict[str, list[str]] = {}
        for entry in self:
            if entry.plugin == plugin:
                out.setdefault(entry.kind, []).append(entry.name)
        return out

    def get(self, kind: str, name: str, *, where: str = "") -> Entry:
        """Look ``name`` up; an unknown or ambiguous name raises with what exists."""
        if kind not in self._entries:
            raise RegistryError(f"{_where(where)}no loaded plugin declares the kind {kind!r} "
                                f"(looking up {name!r}); kinds are: {', '.join(self.kinds)}"
                                + self._failed_note(name))
        table = self._entries[kind]
        if name in table:
            return table[name]
        if ":" not in name:
            matches = [e for e in table.values() if e.short_name == name]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise RegistryError(
                    f"{_where(where)}{self.singular(kind)} name {name!r} is ambiguous: "
                    f"{', '.join(sorted(e.name for e in matches))}; write the full name"
                )
        raise RegistryError(self._unknown_message(kind, name, where))

    def find(self, name: str) -> list[Entry]:
        """Entries of every kind called ``name`` (a full name, or a bare name: every
        namespace's); an unknown name raises with the closest name of any kind."""
        found = [entry for entry in self if name in (entry.name, entry.short_name)]
        if found:
            return found
        by_name = {e.name: e for e in self} | {e.short_name: e for e in self}
        close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.5)
        msg = f"unknown name {name!r}."
        if close:
            entry = by_name[close[0]]
            msg += f" Did you mean {entry.name!r} ({self.singular(entry.kind)})?"
        msg += " `dgm plugins` lists everything registered."
        raise RegistryError(msg + self._failed_note(name))

    def _failed_note(self, name: str) -> str:
        namespace = name.split(":", 1)[0] if ":" in name else None
        if namespace in self.failed_plugins:
            return f" Plugin {namespace!r} failed to load: {self.failed_plugins[namespace]}"
        if self.failed_plugins:
            return " Plugins that failed to load: " + ", ".join(sorted(self.failed_plugins)) + "."
        return ""

    def _unknown_message(self, kind: str, name: str, where: str) -> str:
        table = self._entries[kind]
        candidates = list(table) + [e.short_name for e in table.values()]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
        known = ", ".join(sorted(table)) or "none"
        msg = f"{_where(where)}unknown {self.singular(kind)} {name!r}."
        if close:
            msg += f" Did you mean {close[0]!r}?"
        msg += f" Registered {kind}: {known}."
        return msg + self._failed_note(name)


def _where(where: str) -> str:
    return f"{where}: " if where else ""
