"""Builds a recipe's registered parts: data sets, then the family with its networks,
likelihood and prior. Everything is looked up by name in the registry."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from dgm.capabilities import declared
from dgm.conditions import DEFAULT_CONDITION_NETWORKS, ConditionEncoder
from dgm.contract import (
    CONDITION_DIM,
    CONDITION_ENCODER,
    ROLES,
    DataInfo,
    DataSource,
    Family,
    Likelihood,
    Modality,
    Prior,
    Role,
)
from dgm.errors import DataError, RecipeError, RecipeWarning
from dgm.recipes import Recipe
from dgm.registry import Entry, Registry
from dgm.settings import bind, parameters


def _call(entry: Entry, where: str, **kwargs: Any) -> Any:
    """Call a registered factory; a ValueError it raises names the recipe table, and so
    does a TypeError from a factory taking ``**kwargs`` (the keys it passes on could not
    be checked before the call: a misspelt one surfaces here)."""
    try:
        return entry.obj(**kwargs)
    except ValueError as exc:
        raise RecipeError(f"{where}: {entry.name} cannot be built with these settings: "
                          f"{exc}") from None
    except TypeError as exc:
        if not any(p.kind == p.VAR_KEYWORD for p in parameters(entry.obj).values()):
            raise
        given = ", ".join(sorted(kwargs)) or "none"
        raise RecipeError(f"{where}: {entry.name} (plugin {entry.plugin}) takes any key, "
                          f"but what it passes them to refused them: {exc}. The keys given "
                          f"were: {given}; check their spelling") from None


BuiltSettings = dict[tuple[str, ...], dict[str, Any]]
"""What was built for each recipe table (``("networks", "encoder")``): the registered
name and every setting, the defaults included; see :func:`dgm.recipes.with_defaults`."""


def _settings_with_defaults(entry: Entry, given: dict[str, Any], provided: tuple[str, ...]
                            ) -> dict[str, Any]:
    """``given`` plus the factory's defaults that a recipe can write (TOML values)."""
    out = {"name": entry.name, **given}
    for name, param in parameters(entry.obj).items():
        if (name in out or name in provided or param.kind == param.VAR_KEYWORD
                or not _writable(param.default)):
            continue
        out[name] = list(param.default) if isinstance(param.default, tuple) else param.default
    return out


def _writable(value: Any) -> bool:
    if isinstance(value, bool | int | float | str):
        return not isinstance(value, float) or value == value
    if isinstance(value, list | tuple):
        return all(_writable(v) for v in value)
    return False


def build_data(recipe: Recipe, registry: Registry, split: str,
               record: BuiltSettings | None = None) -> DataSource:
    """The recipe's data set for ``split``."""
    name, settings = recipe.named("data")
    where = recipe.where("[data]")
    entry = registry.get("datasets", name or "", where=recipe.where("data.name"))
    kwargs = bind(entry.obj, settings, where, provided=("split",),
                  also=("name", "batch_size", "num_workers"))
    source = _call(entry, where, split=split, **kwargs)
    if record is not None:
        record[("data",)] = _settings_with_defaults(entry, kwargs, ("split",))
    if len(source) == 0:
        raise DataError(f"{where}: data set {entry.name!r} has no examples in split "
                        f"{split!r}")
    return source


def build_modality(info: DataInfo, registry: Registry) -> Modality:
    """The modality of ``info``; factories with an ``info`` parameter receive it."""
    factory = registry.get("modalities", info.modality).obj
    return factory(info=info) if "info" in parameters(factory) else factory()


CORE_DENOISERS = {1: "core:mlp-denoiser", 2: "core:conv1d-denoiser", 3: "core:unet2d"}
"""The core denoiser for examples shaped (D,), (C, L) and (C, H, W)."""


def role_examples(registry: Registry, role: str, shape: tuple[int, ...] = ()) -> list[str]:
    """Registered networks for ``role``: the core denoiser that fits ``shape``, then those
    registered modalities use as their default (modalities whose factory needs a
    ``DataInfo`` are skipped)."""
    names: list[str] = []
    if role == "denoiser" and len(shape) in CORE_DENOISERS:
        names.append(CORE_DENOISERS[len(shape)])
    for entry in registry.entries("modalities"):
        try:
            name = entry.obj().networks.get(role)
            if name and name not in names:
                names.append(registry.get("networks", name).name)
        except Exception:  # noqa: BLE001 - a modality that cannot be built gives no example
            continue
    return names


def _check_family_arguments(role: Role, structural: dict[str, Any]) -> None:
    """A family passes a declared role exactly its structural arguments (and
    ``condition_dim`` where the role takes the condition as an argument)."""
    expected = set(role.arguments) | ({CONDITION_DIM} if role.conditioning == "argument"
                                      else set())
    unexpected = sorted(set(structural) - expected)
    missing = sorted(set(role.arguments) - set(structural))
    if unexpected or missing:
        problems = ([f"unexpected {', '.join(unexpected)}"] if unexpected else []) + (
            [f"missing {', '.join(missing)}"] if missing else [])
        raise TypeError(f"role {role.name!r} is built with {', '.join(role.arguments)}; "
                        f"got {'; '.join(problems)}")


class BuildContext:
    """What a family factory receives: the data's description and builders for the
    parts the recipe names (or the modality's defaults where it names none)."""

    def __init__(self, recipe: Recipe, registry: Registry, info: DataInfo,
                 modality: Modality, record: BuiltSettings | None = None) -> None:
        self.recipe = recipe
        self.registry = registry
        self.info = info
        self.modality = modality
        self.roles_built: set[str] = set()
        self.record: BuiltSettings = {} if record is None else record
        """Each table built, with its defaults (:data:`BuiltSettings`)."""

    def network(self, role: Role | str, default: str | None = None,
                **structural: Any) -> nn.Module:
        """Build the network for ``role`` (a declared :class:`Role`, or the name of one);
        ``structural`` are the family's arguments, every one of which the factory must
        accept. ``default`` replaces the modality's default network for the role."""
        if isinstance(role, Role):
            _check_family_arguments(role, structural)
        else:  # a role by name (hook API 1 families): the arguments are the family's
            role = ROLES.get(role) or Role(role, tuple(structural), "", conditioning=None)
        self.roles_built.add(role.name)
        tables = self.recipe.table("networks")
        table = dict(tables.get(role.name, {}))
        where = self.recipe.where(f"[networks.{role.name}]")
        name = table.pop("name", None) or default or self.modality.networks.get(role.name)
        if name is None:
            examples = role_examples(self.registry, role.name, tuple(self.info.shape))
            example = examples[0] if examples else "PLUGIN:NETWORK"
            known = ", ".join(sorted(self.modality.networks)) or "none"
            others = (f" (registered networks for this role: {', '.join(examples)})"
                      if examples else " (no registered modality has a default for it: "
                      "register a network and name it)")
            raise RecipeError(f"{where}: modality {self.modality.name!r} has no default "
                              f"network for role {role.name!r} (it has defaults for: "
                              f"{known}); name one, e.g. [networks.{role.name}] name = "
                              f"\"{example}\"{others}")
        entry = self.registry.get("networks", name, where=where)
        params = parameters(entry.obj)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            for argument in structural:
                if argument not in params:
                    what = ("so it cannot serve a conditional model"
                            if argument == CONDITION_DIM else
                            f"which every {role.name} network receives")
                    raise RecipeError(
                        f"{where}: network {entry.name} (plugin {entry.plugin}) takes no "
                        f"argument {argument!r}, {what}; a {role.name!r} factory is "
                        f"called with {', '.join(sorted(structural))} and returns "
                        f"{role.returns}")
        kwargs = bind(entry.obj, table, where, provided=tuple(structural))
        network = _call(entry, where, **structural, **kwargs)
        self.record[("networks", role.name)] = _settings_with_defaults(
            entry, kwargs, tuple(structural))
        declared(network)  # a misspelt capability fails here, not silently later
        return network

    def condition_encoder(self, use: bool | None = None) -> ConditionEncoder | None:
        """The encoder of the data's condition when the recipe's ``condition.use`` (or
        ``use``) is true, else None. Each call builds a new one (a GAN's generator and
        critic each have their own)."""
        config = self.recipe.condition
        if not (config.use if use is None else use):
            return None
        condition = self.info.condition
        if condition.kind == "none":
            data = self.recipe.table("data").get("name", "?")
            raise RecipeError(f"{self.recipe.where('condition.use')}: the data set {data} "
                              f"declares no condition (its DataInfo.condition is none), so "
                              "there is nothing to condition on; set condition.use = false")
        default = DEFAULT_CONDITION_NETWORKS.get(condition.kind)  # else the modality's
        network = self.network(CONDITION_ENCODER, default=default, condition=condition,
                               dim=config.dim)
        return ConditionEncoder(network, condition, config.dim, config.dropout)

    def likelihood(self) -> Likelihood:
        name, settings = self.recipe.named("likelihood")
        name = name or self.modality.likelihood
        where = self.recipe.where("[likelihood]")
        entry = self.registry.get("likelihoods", name, where=where)
        structural: dict[str, Any] = {}
        if self.info.grid is not None and getattr(entry.obj, "discrete", False):
            if "grid" in parameters(entry.obj):
                structural["grid"] = self.info.grid  # the data's grid, value range included
            elif "levels" in parameters(entry.obj) and "levels" not in settings:
                settings["levels"] = self.info.levels  # a hook API 1 discrete likelihood
        kwargs = bind(entry.obj, settings, where, provided=tuple(structural))
        likelihood = _call(entry, where, **structural, **kwargs)
        self.record[("likelihood",)] = _settings_with_defaults(entry, kwargs,
                                                               tuple(structural))
        return likelihood

    def prior(self, shape: tuple[int, ...]) -> Prior:
        name, settings = self.recipe.named("prior")
        where = self.recipe.where("[prior]")
        entry = self.registry.get("priors", name or "core:standard-normal", where=where)
        kwargs = bind(entry.obj, settings, where, provided=("shape",))
        prior = _call(entry, where, shape=shape, **kwargs)
        self.record[("prior",)] = _settings_with_defaults(entry, kwargs, ("shape",))
        return prior


def family_roles(entry: Entry) -> tuple[Role, ...]:
    """The roles a registered family builds: the ``roles`` its factory's return type (a
    :class:`Family` subclass) declares; () for a factory that declares none."""
    import typing

    try:
        returned = typing.get_type_hints(entry.obj).get("return")
    except Exception:  # noqa: BLE001 - an annotation that does not resolve declares nothing
        return ()
    if isinstance(returned, type) and issubclass(returned, Family):
        return tuple(returned.roles)
    return ()


def build_family(recipe: Recipe, registry: Registry, info: DataInfo,
                 warn_unused: bool = True, record: BuiltSettings | None = None) -> Family:
    """Build the recipe's family for data described by ``info``. With ``warn_unused``,
    a ``[networks.ROLE]`` table for a role the family never builds (a misspelt role, or
    one left from another family) is reported with a :class:`RecipeWarning`. ``record``
    receives the settings of everything built, defaults included."""
    name, settings = recipe.named("family")
    where = recipe.where("[family]")
    entry = registry.get("families", name or "", where=recipe.where("family.name"))
    modality = build_modality(info, registry)
    ctx = BuildContext(recipe, registry, info, modality, record)
    kwargs = bind(entry.obj, settings, where, provided=("ctx",))
    family = _call(entry, where, ctx=ctx, **kwargs)
    ctx.record[("family",)] = _settings_with_defaults(entry, kwargs, ("ctx",))
    declared(family)
    unused = set(recipe.table("networks")) - ctx.roles_built if warn_unused else set()
    for role in sorted(unused):
        built = ", ".join(sorted(ctx.roles_built)) or "none"
        warnings.warn(f"{recipe.where(f'[networks.{role}]')}: the family {entry.name} "
                      f"builds no {role!r} network (it builds: {built}); this table is "
                      "ignored", RecipeWarning, stacklevel=2)
    return family
