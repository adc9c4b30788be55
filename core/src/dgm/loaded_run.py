"""A trained run, loaded: its folder, recipe, data info, family (final weights) and data
modality. The one object sampling, evaluation, export, latents and plugins load a run
through; it imports nothing above the assembly."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import PartialState
from safetensors import safe_open
from safetensors.torch import load_model

from dgm import resources
from dgm.assembly import build_family, build_modality
from dgm.contract import DataInfo, Family, Modality
from dgm.errors import RunDirError
from dgm.plugins import get_registry
from dgm.recipes import Recipe, read_recipe
from dgm.registry import Registry
from dgm.runs import RunDir


@dataclass
class LoadedRun:
    """A run folder's trained family, in eval mode on accelerate's device, with what it
    was trained on. Open one with :meth:`open`."""

    run: RunDir
    recipe: Recipe
    info: DataInfo
    family: Family
    modality: Modality

    @classmethod
    def open(cls, run: RunDir | str | Path, registry: Registry | None = None) -> LoadedRun:
        """Rebuild the run's family from its recipe and load its final weights; a folder
        without them, or weights that no longer fit the networks the recipe builds, is a
        :class:`RunDirError` that says what to do."""
        run = run if isinstance(run, RunDir) else RunDir.open(run)
        registry = registry or get_registry()
        recipe = read_recipe(run.recipe_file)
        info = run.read_data_info()
        _check_weights_fit(recipe, registry, info, run)
        family = build_family(recipe, registry, info, warn_unused=False)  # warned at training
        if not run.weights_file.is_file():
            raise RunDirError(f"run folder {str(run.path)!r} has no final weights "
                              f"({run.weights_file}); finish training with `dgm run`")
        if not os.access(run.weights_file, os.R_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(run.weights_file))
        try:
            with safe_open(str(run.weights_file), "pt") as f:
                f.keys()
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise RunDirError(
                f"run folder {str(run.path)!r}: its final weights ({run.weights_file}) are "
                f"damaged and cannot be read ({_shortened(str(exc))}). Run the same `dgm run` "
                "command again: it rewrites them from the last checkpoint without training "
                "anew") from None
        try:
            load_model(family, str(run.weights_file), device="cpu")
        except RuntimeError as exc:  # the saved tensors do not fit the networks built now
            raise RunDirError(
                f"run folder {str(run.path)!r}: its weights ({run.weights_file}) do not fit "
                f"the networks its recipe builds now. Was it trained with another version of "
                f"dgm or of the plugins it uses ({plugins_named(recipe)})? "
                f"{_shortened(str(exc))}"
            ) from None
        family.to(PartialState().device).eval()  # where accelerate trains
        return cls(run, recipe, info, family, build_modality(info, registry))

    @property
    def name(self) -> str:
        return self.run.path.name


def _check_weights_fit(recipe: Recipe, registry: Registry, info: DataInfo, run: RunDir
                       ) -> None:
    """Refuse, before allocating it, a family too large for this machine (a recipe or a
    data_info.json edited by hand)."""
    family = resources.on_meta(lambda: build_family(recipe, registry, info,
                                                    warn_unused=False))
    if family is None:
        return
    needed = resources.estimate(family)
    resources.check_fits(
        needed.weight_bytes, resources.memory_limit(recipe.train.max_memory_gb),
        f"the family of run {str(run.path)!r} ({needed.parameters:,} parameters)",
        str(run.recipe_file), "Its recipe.toml or model/data_info.json was changed since "
        "training, or it was trained on a larger machine (raise train.max_memory_gb in its "
        "recipe.toml if this one really has the memory)")


def plugins_named(recipe: Recipe) -> str:
    """The plugins whose entries a recipe names (``image`` of ``image:digits``)."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("name"), str) and ":" in value["name"]:
                names.add(value["name"].split(":")[0])
            for item in value.values():
                walk(item)

    walk(recipe.tables)
    return ", ".join(sorted(names))


def _shortened(text: str, limit: int = 300) -> str:
    flat = " ".join(line.strip() for line in text.strip().splitlines())
    return flat if len(flat) <= limit else flat[:limit] + " ..."


__all__ = ["LoadedRun"]
