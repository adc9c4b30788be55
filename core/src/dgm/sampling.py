"""Sampling from a trained run: ``dgm sample`` and its Python call :func:`sample`.

A condition is given in whatever form its kind takes: a class by name or index, a token
condition as text, a tensor condition as a tensor or a file the condition modality's
codec reads. :func:`condition_value` turns any of them into the one raw condition the
family's ``sample`` receives, or says in one line what the run accepts."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgm.capabilities import SIZED_SAMPLING, has
from dgm.contract import Family
from dgm.errors import RecipeError
from dgm.loaded_run import LoadedRun
from dgm.run_lock import run_folder_lock
from dgm.runs import RunDir
from dgm.settings import bind, parameters
from dgm.sizes import parse_size

ConditionValue = str | int | Path | Tensor
"""A condition as a person gives it: a class name or index, a text, a file, a tensor."""


def draw_samples(family: Family, n: int, batch_size: int, seed: int,
                 options: Mapping[str, Any] | None = None,
                 condition: Tensor | int | None = None,
                 conditions: Tensor | None = None) -> Tensor:
    """``n`` samples on the CPU, drawn in batches with a seeded generator; ``options`` are
    the family's own sampling keywords (a diffusion sampler and its steps). ``condition``
    is one raw condition (a class index, or a tensor shaped like one example's ``c``)
    every sample is drawn for; ``conditions`` gives one per sample (``n`` of them). With
    neither, the family's default (random classes)."""
    if condition is not None and conditions is not None:
        raise ValueError("give condition (one for every sample) or conditions (one per "
                         "sample), not both")
    device = next(family.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    family.eval()
    options = dict(options or {})
    one = None if condition is None else torch.as_tensor(condition).to(device)
    if conditions is not None and conditions.shape[0] != n:
        raise ValueError(f"{conditions.shape[0]} conditions given for {n} samples")

    def given(start: int, m: int) -> dict[str, Tensor]:  # passed only when there is one
        if conditions is not None:
            return {"condition": conditions[start:start + m].to(device)}
        if one is None:
            return {}
        return {"condition": one.unsqueeze(0).expand(m, *one.shape).clone()}

    chunks = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        chunks.append(family.sample(m, generator=generator, **given(start, m),
                                    **options).cpu())
    return torch.cat(chunks).float()


def condition_value(loaded: LoadedRun, value: ConditionValue, given_as: str = "condition"
                    ) -> Tensor:
    """One raw condition for the run from ``value``: a class name or index, a text (token
    conditions), or a tensor or a file path (tensor conditions). A value of the wrong
    kind, an unknown class, a character outside the vocabulary or a tensor of the wrong
    shape is a :class:`RecipeError` naming what the run accepts. ``given_as`` names the
    option in messages (``--text``)."""
    run, family = loaded.run, loaded.family
    condition = loaded.info.condition
    what = f"{given_as} {_shown(value)}"
    if not family.conditional:
        raise RecipeError(f"{what}: the {type(family).__name__} of run {str(run.path)!r} "
                          "takes no condition (it was trained without one; train with "
                          "[condition] use = true)")
    accepts = f"run {str(run.path)!r} is conditioned on {condition.describe()}"
    if condition.kind == "class":
        if isinstance(value, (Path, Tensor)) or given_as == "--text":
            raise RecipeError(f"{what}: {accepts}; give the class with --condition NAME")
        return torch.tensor(class_index(loaded, value, given_as))
    if condition.kind == "tokens":
        if not isinstance(value, str) or given_as not in ("condition", "--text"):
            raise RecipeError(f"{what}: {accepts}; give the text with --text \"...\"")
        try:
            return condition.encode_text(value)
        except ValueError as exc:
            raise RecipeError(f"{what}: {exc}") from None
    if isinstance(value, Tensor):
        tensor = value.float()
    elif isinstance(value, (str, Path)) and given_as in ("condition", "--condition-file"):
        tensor = _read_condition_file(loaded, Path(value), what)
    else:
        raise RecipeError(f"{what}: {accepts}; give a file with --condition-file PATH")
    if tuple(tensor.shape) != tuple(condition.shape):
        raise RecipeError(f"{what}: shaped {'x'.join(map(str, tensor.shape))}, but {accepts}")
    return tensor


def _read_condition_file(loaded: LoadedRun, path: Path, what: str) -> Tensor:
    """A tensor condition read by its modality's codec, in that modality's
    representation."""
    from dgm.assembly import build_modality
    from dgm.contract import DataInfo
    from dgm.plugins import get_registry

    condition = loaded.info.condition
    if not path.is_file():
        raise RecipeError(f"{what}: no such file")
    info = DataInfo(condition.modality, tuple(condition.shape))
    modality = build_modality(info, get_registry())
    try:
        return modality.representation.forward(modality.read(path)).float()
    except Exception as exc:  # a codec's own error, whatever it raises
        raise RecipeError(f"{what}: the {condition.modality} codec cannot read it: "
                          f"{exc}") from None


def class_index(loaded: LoadedRun, name: str | int, given_as: str = "condition") -> int:
    """The index of class ``name`` (a class name, or its index) among the run's classes;
    an unknown name is an error listing them."""
    classes = list(loaded.info.condition.classes)
    text = str(name)
    if text.isdigit() and int(text) < len(classes) and text not in classes:
        return int(text)
    if text not in classes:
        raise RecipeError(f"{given_as} {text!r} is not a class of run "
                          f"{str(loaded.run.path)!r}; its classes are: {', '.join(classes)}")
    return classes.index(text)


def _shown(value: ConditionValue) -> str:
    if isinstance(value, Tensor):
        return f"(a tensor shaped {'x'.join(map(str, value.shape))})"
    return repr(str(value))


def sample(run: LoadedRun | RunDir | str | Path, n: int, condition: ConditionValue | None
           = None, seed: int = 1234, size: str | None = None, batch_size: int = 256,
           **options: Any) -> Tensor:
    """``n`` samples from a trained run, in its data representation on the CPU:
    ``dgm sample`` without the files. ``condition`` is what every sample is drawn for
    (a class name or index, a text, a tensor or a file; see :func:`condition_value`);
    ``size`` (``"WIDTHxHEIGHT"``) samples at another size where the family can;
    ``options`` go to the family's ``sample`` (``sampler="ddim"``, ``steps=50``,
    ``guidance=3.0``)::

        from dgm.sampling import sample
        sevens = sample("runs/digits-vae-given-class", 16, condition="seven")
    """
    loaded = run if isinstance(run, LoadedRun) else LoadedRun.open(run)
    one = None if condition is None else condition_value(loaded, condition)
    return _draw(loaded, n, seed, batch_size, dict(options), one, size)


def _draw(loaded: LoadedRun, n: int, seed: int, batch_size: int, options: dict[str, Any],
          condition: Tensor | None, size: str | None, conditions: Tensor | None = None
          ) -> Tensor:
    family = loaded.family
    bind(family.sample, options, "dgm sample --option",
         provided=("n", "generator", "condition", "size"))
    size = size or loaded.recipe.sample.size
    if size:
        options["size"] = _sample_size(size, loaded)
    try:
        return draw_samples(family, n, batch_size, seed, options, condition=condition,
                            conditions=conditions)
    except ValueError as exc:
        if "size" not in options:
            raise
        raise RecipeError(f"size {size!r} for run {str(loaded.run.path)!r}: {exc}") from None


def _sample_size(size: str, loaded: LoadedRun) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` as (height, width), checked against the family's ``sample``."""
    family = loaded.family
    try:
        parsed = parse_size(size)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    if not has(family, SIZED_SAMPLING):
        takes = (" (its sample takes size: declare capabilities = "
                 "frozenset({'sized-sampling'}) on the family)"
                 if "size" in parameters(family.sample) else "")
        raise RecipeError(f"size {size!r}: the {type(family).__name__} of run "
                          f"{str(loaded.run.path)!r} samples only at its training "
                          f"size{takes}")
    return parsed


def default_conditions(loaded: LoadedRun, n: int) -> Tensor | None:
    """The conditions samples are drawn for when none is given: None (random classes, or
    an unconditional model), or, for a token or tensor condition, which cannot be drawn
    at random, those of the first ``n`` examples of the evaluation split (cycled)."""
    if not loaded.family.conditional or loaded.info.condition.kind == "class":
        return None
    from dgm.assembly import build_data
    from dgm.plugins import get_registry

    data = build_data(loaded.recipe, get_registry(), loaded.recipe.evaluate.split)
    return torch.stack([data[i % len(data)]["c"] for i in range(n)])


def write_samples(loaded: LoadedRun, samples: Tensor, out: Path) -> Path:
    """Each sample as a file of the run's modality (``sample-0000.png``, ...) and a
    preview grid; returns the grid's path."""
    modality = loaded.modality
    out.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(samples):
        decoded = modality.representation.inverse(x)
        modality.write(decoded, out / f"sample-{i:04d}{modality.file_suffix}")
    grid = out / "grid.png"
    modality.preview(samples, grid)
    return grid


def sample_run(run: RunDir | LoadedRun, n: int, seed: int = 1234, out: Path | None = None,
               echo=print, batch_size: int = 256, options: dict[str, Any] | None = None,
               condition: ConditionValue | None = None, given_as: str = "--condition",
               size: str | None = None) -> Path:
    """Draw ``n`` samples and write each as a file plus a preview grid: ``dgm sample``.
    ``condition`` (given on the command line as ``given_as``) is what every sample is
    drawn for; without one, a model conditioned on tokens or a tensor draws for the
    evaluation split's conditions (see :func:`default_conditions`), which are written
    beside the samples as ``conditions.pt``."""
    loaded = run if isinstance(run, LoadedRun) else LoadedRun.open(run)
    out = Path(out) if out else loaded.run.samples_dir
    options = dict(options or {})
    one = None if condition is None else condition_value(loaded, condition, given_as)
    inside = loaded.run.path.resolve() in [out.resolve(), *out.resolve().parents]
    with run_folder_lock(loaded.run.path, "dgm sample") if inside else nullcontext():
        conditions = default_conditions(loaded, n) if one is None else None
        samples = _draw(loaded, n, seed, batch_size, options, one, size, conditions)
        if conditions is not None:
            out.mkdir(parents=True, exist_ok=True)
            torch.save(conditions, out / "conditions.pt")
        grid = write_samples(loaded, samples, out)
    echo(f"wrote {n} samples and {grid}")
    return grid


__all__ = ["class_index", "condition_value", "draw_samples", "sample", "sample_run",
           "write_samples"]
