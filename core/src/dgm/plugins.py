"""The plugin manager: finds plugins through the ``dgm`` entry-point group, lazily.

Environment variables:

``DGM_PLUGINS``
    Comma-separated plugin names to load. Unset: all installed plugins. Empty: none
    (the core's own entries always load).
``DGM_TRACE_HOOKS``
    When set to a non-empty value, every hook call is traced to standard error.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from dgm import hookspecs
from dgm.errors import DgmError
from dgm.registry import KIND_MARK, Registry

CORE_PLUGIN = "core"
ENTRY_POINT_GROUP = "dgm"


@dataclass
class PluginInfo:
    """What ``dgm plugins`` reports about one plugin."""

    name: str
    distribution: str
    version: str
    loaded: bool
    error: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Deprecated hooks it implements, a newer hook API than the host's, ..."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "loaded": self.loaded,
            "error": self.error,
            "registered": self.registered,
            "warnings": self.warnings,
        }


class PluginHost:
    """A pluggy manager plus the registry built from its plugins' hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("dgm")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        if os.environ.get("DGM_TRACE_HOOKS"):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()

    # -- loading ------------------------------------------------------------------------

    def load_entry_points(self, selection: set[str] | None = None) -> None:
        """Import and register every ``dgm`` entry point (or only ``selection``)."""
        for ep in _entry_points():
            if ep.name != CORE_PLUGIN and selection is not None and ep.name not in selection:
                continue
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in self.plugins:
                other = self.plugins[ep.name].distribution
                self._fail(ep.name, dist, version,
                           f"plugin name {ep.name!r} is already used by distribution {other!r}")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self._fail(ep.name, dist, version, _describe(exc))
                continue
            self.add_plugin(module, ep.name, dist, version)
        self.report_unknown_hooks()

    def add_plugin(self, plugin: object, name: str, distribution: str = "?",
                   version: str = "?") -> None:
        """Register one plugin object and run its registration hooks. A plugin that
        pluggy refuses (a hookimpl whose arguments the hookspec does not have) is
        reported against ``name`` and not registered."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.pm.register(plugin, name=name)
            except Exception as exc:
                self._fail(name, distribution, version, _describe(exc))
                return
        info = PluginInfo(name, distribution, version, loaded=True)
        self.plugins[name] = info
        for w in caught:  # deprecated hooks: shown by `dgm plugins`, and warned again
            info.warnings.append(f"{w.category.__name__}: {w.message}")
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        target = getattr(plugin, "dgm_hook_api", None)
        if isinstance(target, int) and target > hookspecs.HOOK_API_VERSION:
            info.warnings.append(
                f"targets dgm hook API {target}, but this dgm has hook API "
                f"{hookspecs.HOOK_API_VERSION}: upgrade dgm (pip install -U dgm-core)")
        elif isinstance(target, int) and target in hookspecs.MIGRATIONS:
            info.warnings.append(f"written against dgm hook API {target}: "
                                 f"{hookspecs.MIGRATIONS[target]}")
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        errors: list[str] = []
        declared: list[str] = []

        def add_hookspecs(module_or_class: object) -> None:
            self.pm.add_hookspecs(module_or_class)
            for attr in dir(module_or_class):  # the kinds it adds, if any
                function = getattr(module_or_class, attr)
                singular = getattr(function, KIND_MARK, None)
                if isinstance(singular, str) and attr.startswith("register_"):
                    kind = attr.removeprefix("register_")
                    if self.registry.add_kind(kind, singular, name):
                        declared.append(kind)

        declare = self.pm.subset_hook_caller("register_hookspecs", remove_plugins=others)
        try:
            declare(register=add_hookspecs)
        except Exception as exc:
            errors.append(f"register_hookspecs raised {_describe(exc)}")
        for kind in self.registry.kinds:
            errors += self._register(plugin, name, kind)
        for kind in declared:  # plugins loaded before the kind existed
            for other in others:
                other_name = self.pm.get_name(other)
                if other_name in self.plugins:
                    problems = self._register(other, other_name, kind)
                    if problems:
                        self._add_error(other_name, problems)
                    self.plugins[other_name].registered = self.registry.by_plugin(other_name)
        info.registered = self.registry.by_plugin(name)
        if errors:
            info.error = "; ".join(errors)

    def _register(self, plugin: object, name: str, kind: str) -> list[str]:
        """Call ``plugin``'s ``register_<kind>`` (if it has one) into the registry; the
        problems, as messages."""
        caller = getattr(self.pm.hook, f"register_{kind}", None)
        if caller is None:
            return []
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        errors: list[str] = []

        def register(entry_name: str, obj: Any, description: str = "") -> None:
            try:
                self.registry.add(kind, entry_name, obj, name, description)
            except DgmError as exc:
                errors.append(str(exc))

        try:
            self.pm.subset_hook_caller(f"register_{kind}", remove_plugins=others)(
                register=register)
        except Exception as exc:
            errors.append(f"register_{kind} raised {_describe(exc)}")
        return errors

    def _add_error(self, name: str, problems: list[str]) -> None:
        info = self.plugins[name]
        info.error = "; ".join([info.error, *problems] if info.error else problems)

    def unknown_hooks(self) -> dict[str, list[str]]:
        """Hook implementations no hookspec declares (misspelt names), by plugin."""
        specified = [n for n, c in vars(self.pm.hook).items()
                     if not n.startswith("_") and c.has_spec()]
        out: dict[str, list[str]] = {}
        for hook_name, caller in vars(self.pm.hook).items():
            if hook_name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if not impl.optionalhook:
                    close = difflib.get_close_matches(hook_name, specified, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    out.setdefault(impl.plugin_name, []).append(
                        f"implements hook {hook_name!r}, which no hookspec declares{hint}")
        return out

    def report_unknown_hooks(self) -> None:
        """Add :meth:`unknown_hooks` to the plugins' errors (after all have loaded, since
        a plugin may declare hooks that others implement)."""
        for name, problems in self.unknown_hooks().items():
            if name in self.plugins:
                self._add_error(name, problems)

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and drop its entries (used by test fixtures)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.registry.remove_plugin(name)
        self.plugins.pop(name, None)

    def _fail(self, name: str, dist: str, version: str, error: str) -> None:
        self.plugins.setdefault(name, PluginInfo(name, dist, version, loaded=False, error=error))
        self.registry.failed_plugins[name] = error


def _entry_points() -> list[metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    out = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:  # a distribution seen twice on sys.path
            seen.add(key)
            out.append(ep)
    return sorted(out, key=lambda e: (e.name != CORE_PLUGIN, e.name))


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def selected_plugins() -> set[str] | None:
    """The plugin names ``DGM_PLUGINS`` selects; ``None`` means all."""
    raw = os.environ.get("DGM_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, built on first call."""
    global _host
    if _host is None:
        host = PluginHost()
        host.load_entry_points(selected_plugins())
        _host = host
    return _host


def get_registry() -> Registry:
    """The process-wide registry (loads plugins on first call)."""
    return get_host().registry


def reset() -> None:
    """Forget the loaded plugins; the next :func:`get_host` loads them again."""
    global _host
    _host = None
