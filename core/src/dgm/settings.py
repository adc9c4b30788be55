"""Checks recipe settings against the signature of the factory they are passed to.

A factory's keyword arguments, with their type annotations and defaults, are the schema of
its recipe table: unknown keys, missing required keys and wrong types are errors that name
the key, the file, and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dgm.errors import RecipeError


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """A bound on a number setting, declared in its annotation so that the recipe check,
    ``dgm show`` and the docs all read it: ``k: Annotated[int, AtLeast(1)]``."""

    minimum: float

    def __str__(self) -> str:
        return f"at least {self.minimum:g}"


Count = typing.Annotated[int, AtLeast(1)]
"""A whole number of things, at least 1 (samples, steps, dimensions)."""


class Where(str):
    """The place a recipe table is named by in errors (``"recipe.toml: [family]"``),
    plus the keys of that table that came from somewhere else (a command-line override),
    so an error about one key can blame where that key came from."""

    keys: dict[str, str]

    def __new__(cls, text: str, keys: Mapping[str, str] | None = None) -> Where:
        where = super().__new__(cls, text)
        where.keys = dict(keys or {})
        return where


def at_key(where: str, key: str) -> str:
    """Where ``key`` of the table at ``where`` came from."""
    return getattr(where, "keys", {}).get(key, where)


def parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """Keyword-settable parameters of ``factory`` (a function or a class)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(factory) and params and params[0].name == "self":
        params = params[1:]
    return {p.name: p for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.VAR_KEYWORD)}


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        return {}


def bind(factory: Callable[..., Any], settings: Mapping[str, Any], where: str,
         provided: Sequence[str] = (), also: Sequence[str] = ()) -> dict[str, Any]:
    """Validate ``settings`` for ``factory``; ``provided`` names arguments the caller fills.

    :param where: the place to name in errors, e.g. ``"recipe.toml: [family]"``.
    :param also: other keys the same table accepts (for the error message only).
    """
    params = parameters(factory)
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if p.kind != p.VAR_KEYWORD and n not in provided]
    allowed += [n for n in also if n not in allowed]
    hints = _hints(factory)
    for key, value in settings.items():
        if key in provided:
            raise RecipeError(f"{at_key(where, key)}: key {key!r} is set by dgm and cannot "
                              "be given here")
        if key not in params and not accepts_any:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RecipeError(
                f"{at_key(where, key)}: unknown key {key!r}.{hint} Expected one of: "
                f"{', '.join(allowed) or '(no settings)'}."
            )
        if key in hints and not check_type(value, hints[key]):
            raise RecipeError(
                f"{at_key(where, key)}: key {key!r} should be {type_name(hints[key])}, "
                f"got {value!r} ({type(value).__name__})"
            )
    missing = [n for n in allowed if n in params and params[n].default is inspect.Parameter.empty
               and n not in settings]
    if missing:
        raise RecipeError(f"{where}: missing required key(s): {', '.join(missing)}")
    return dict(settings)


def settings_of(factory: Callable[..., Any],
                provided: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """The recipe settings of ``factory``: (name, type, default) for each keyword
    parameter not in ``provided``. The default is written as in a recipe, or is
    ``"required"`` (none) or ``"optional"`` (None); type ``"(any key)"`` marks
    ``**kwargs``."""
    hints = _hints(factory)
    rows = []
    for name, param in parameters(factory).items():
        if name in provided:
            continue
        if param.kind == param.VAR_KEYWORD:
            rows.append((f"**{name}", "(any key)", ""))
            continue
        hint = hints.get(name, param.annotation)
        kind = "" if hint is inspect.Parameter.empty else type_name(hint)
        if param.default is inspect.Parameter.empty:
            default = "required"
        elif param.default is None:
            default = "optional"
        else:
            default = _toml_value(param.default)
        rows.append((name, kind, default))
    return rows


def _toml_value(value: Any) -> str:
    """``value`` as a recipe would write it (``"linear"``, ``true``, ``[8, 16]``)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def check_type(value: Any, hint: Any) -> bool:
    """Does a TOML value fit an annotation? Ints are accepted where floats are expected."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return check_type(value, base) and all(
            isinstance(value, bool) or not isinstance(value, int | float)
            or value >= extra.minimum for extra in extras if isinstance(extra, AtLeast))
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(check_type(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        if not args:
            return True
        inner = args[0]
        return all(check_type(v, inner) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        bounds = [str(extra) for extra in extras if isinstance(extra, AtLeast)]
        return " ".join([type_name(base), *bounds])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "absent"
    if origin is not None:
        args = typing.get_args(hint)
        return f"a list of {type_name(args[0])}" if args else "a list"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def dataclass_from(cls: type, settings: Mapping[str, Any], where: str) -> Any:
    """Build a config dataclass from a recipe table, with the same checks as :func:`bind`.
    Every number must be finite; fields named in the class's ``POSITIVE`` tuple must be
    at least 1, those in ``ABOVE_ZERO`` above 0 and those in ``NON_NEGATIVE`` at least
    0."""
    assert dataclasses.is_dataclass(cls)
    config = cls(**bind(cls, settings, where))
    rules = [("POSITIVE", lambda v: v >= 1, "at least 1"),
             ("ABOVE_ZERO", lambda v: v > 0, "above 0"),
             ("NON_NEGATIVE", lambda v: v >= 0, "at least 0")]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"{at_key(where, f.name)}: key {f.name!r} should be a finite "
                              f"number, got {value!r}")
    for attribute, holds, wanted in rules:
        for name in getattr(cls, attribute, ()):
            if not holds(getattr(config, name)):
                raise RecipeError(f"{at_key(where, name)}: key {name!r} should be {wanted}, "
                                  f"got {getattr(config, name)!r}")
    return config
