"""Sampling from a trained run: ``dgm sample`` and its Python call :func:`sample`.

A condition is given in whatever form its kind takes: a class by name or index, a token
condition as text, a tensor condition as a tensor or a file the condition modality's
codec reads. :func:`condition_value` turns any of them into the one raw condition the
family's ``sample`` receives, or says in one line what the run accepts."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgm import resources
from dgm.capabilities import SIZED_SAMPLING, has
from dgm.contract import Family
from dgm.errors import RecipeError
from dgm.loaded_run import LoadedRun
from dgm.run_lock import run_folder_lock
from dgm.runs import MAX_EXAMPLE_ELEMENTS, RunDir
from dgm.settings import bind, parameters
from dgm.sizes import parse_size

ConditionValue = str | int | Path | Tensor
"""A condition as a person gives it: a class name or index, a text, a file, a tensor."""


def iter_samples(family: Family, n: int, batch_size: int, seed: int,
                 options: Mapping[str, Any] | None = None,
                 condition: Tensor | int | None = None,
                 conditions: Callable[[int, int], Tensor] | Tensor | None = None
                 ) -> Iterator[Tensor]:
    """The batches :func:`draw_samples` concatenates, one at a time on the CPU, so that a
    caller can write each before the next is drawn. ``conditions`` may also be a
    function ``(start, m)`` returning the conditions of samples ``start`` to
    ``start + m``."""
    if condition is not None and conditions is not None:
        raise ValueError("give condition (one for every sample) or conditions (one per "
                         "sample), not both")
    device = next(family.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    family.eval()
    options = dict(options or {})
    one = None if condition is None else torch.as_tensor(condition).to(device)
    if isinstance(conditions, Tensor):
        if conditions.shape[0] != n:
            raise ValueError(f"{conditions.shape[0]} conditions given for {n} samples")
        table = conditions
        conditions = lambda start, m: table[start:start + m]  # noqa: E731

    def given(start: int, m: int) -> dict[str, Tensor]:  # passed only when there is one
        if conditions is not None:
            return {"condition": conditions(start, m).to(device)}
        if one is None:
            return {}
        return {"condition": one.unsqueeze(0).expand(m, *one.shape).clone()}

    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        yield family.sample(m, generator=generator, **given(start, m), **options).cpu().float()


def draw_samples(family: Family, n: int, batch_size: int, seed: int,
                 options: Mapping[str, Any] | None = None,
                 condition: Tensor | int | None = None,
                 conditions: Tensor | None = None) -> Tensor:
    """``n`` samples on the CPU, drawn in batches with a seeded generator; ``options`` are
    the family's own sampling keywords (a diffusion sampler and its steps). ``condition``
    is one raw condition (a class index, or a tensor shaped like one example's ``c``)
    every sample is drawn for; ``conditions`` gives one per sample (``n`` of them). With
    neither, the family's default (random classes)."""
    return torch.cat(list(iter_samples(family, n, batch_size, seed, options, condition,
                                       conditions)))


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
          condition: Tensor | None, size: str | None, conditions: Any = None
          ) -> Tensor:
    return torch.cat(list(_batches(loaded, n, seed, batch_size, options, condition, size,
                                   conditions)))


def _batches(loaded: LoadedRun, n: int, seed: int, batch_size: int, options: dict[str, Any],
             condition: Tensor | None, size: str | None, conditions: Any = None
             ) -> Iterator[Tensor]:
    """Batches of samples for ``dgm sample`` and :func:`sample`, after checking the
    options and the size; at a size larger than the training size, batches shrink so
    that one batch's feature maps fit in the run's memory limit."""
    family = loaded.family
    bind(family.sample, options, "dgm sample --option",
         provided=("n", "generator", "condition", "size"))
    size = size or loaded.recipe.sample.size
    if size:
        options["size"] = _sample_size(size, loaded)
        batch_size = _batch_that_fits(loaded, options["size"], batch_size, size)
    try:
        yield from iter_samples(family, n, batch_size, seed, options, condition=condition,
                                conditions=conditions)
    except ValueError as exc:
        if "size" not in options:
            raise
        raise RecipeError(f"size {size!r} for run {str(loaded.run.path)!r}: {exc}") from None


FEATURE_MAP_FACTOR = 64
"""Bytes a network holds while it samples, per byte of the sample (its feature maps): a
rough bound used to size batches at large sample sizes."""


def _batch_that_fits(loaded: LoadedRun, size: tuple[int, int], batch_size: int, text: str
                     ) -> int:
    shape = (*loaded.info.shape[:-2], *size)
    per_sample = resources.shape_bytes(1, shape) * FEATURE_MAP_FACTOR
    limit = resources.memory_limit(loaded.recipe.train.max_memory_gb)
    elements = per_sample // (4 * FEATURE_MAP_FACTOR)
    if elements > MAX_EXAMPLE_ELEMENTS or per_sample > limit:
        raise RecipeError(f"size {text!r}: one sample shaped {'x'.join(map(str, shape))} "
                          f"needs about {resources.size_text(per_sample)} while it is drawn, "
                          f"more than the {resources.size_text(limit)} this run may use; "
                          "nothing was drawn. Ask for a smaller size")
    return max(1, min(batch_size, limit // per_sample))


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


def default_conditions(loaded: LoadedRun, n: int) -> Callable[[int, int], Tensor] | None:
    """The conditions samples are drawn for when none is given: None (random classes, or
    an unconditional model), or, for a token or tensor condition, which cannot be drawn
    at random, those of the evaluation split's examples in order (cycled), as a function
    ``(start, m)`` giving those of samples ``start`` to ``start + m``."""
    if not loaded.family.conditional or loaded.info.condition.kind == "class":
        return None
    from dgm.assembly import build_data
    from dgm.plugins import get_registry

    data = build_data(loaded.recipe, get_registry(), loaded.recipe.evaluate.split)
    return lambda start, m: torch.stack([data[i % len(data)]["c"]
                                         for i in range(start, start + m)])


PREVIEW_SAMPLES = 256
"""The preview grid shows at most this many samples (the first ones)."""


def write_samples(loaded: LoadedRun, samples: Tensor | Iterable[Tensor], out: Path,
                  n: int | None = None, echo: Callable[[str], None] | None = None) -> Path:
    """Each sample as a file of the run's modality (``sample-0000.png``, ...) and a
    preview grid of the first :data:`PREVIEW_SAMPLES`; returns the grid's path.
    ``samples`` is a tensor or an iterable of batches, written as they come; with ``n``
    (how many there will be), writing stops with an error, keeping what was written,
    when the disk would not hold them all."""
    modality = loaded.modality
    out.mkdir(parents=True, exist_ok=True)
    batches = [samples] if isinstance(samples, Tensor) else samples
    preview: list[Tensor] = []
    written = written_bytes = 0
    for batch in batches:
        for x in batch:
            decoded = modality.representation.inverse(x)
            path = out / f"sample-{written:04d}{modality.file_suffix}"
            modality.write(decoded, path)
            written += 1
            written_bytes += path.stat().st_size
        if len(preview) < PREVIEW_SAMPLES:
            preview.extend(batch[:PREVIEW_SAMPLES - len(preview)])
        if n is not None and written < n:
            _check_disk_holds(out, written, written_bytes, n)
            if echo is not None and written % (16 * len(batch)) == 0:
                echo(f"  {written:,} of {n:,} samples written")
    grid = out / "grid.png"
    modality.preview(torch.stack(preview), grid)
    return grid


def _check_disk_holds(out: Path, written: int, written_bytes: int, n: int) -> None:
    """After ``written`` of ``n`` samples: refuse to go on when the rest would not fit on
    the disk holding ``out`` (judged by the size of those written so far)."""
    needed = written_bytes / written * (n - written)
    free = shutil.disk_usage(out).free
    if needed > free:
        raise RecipeError(
            f"dgm sample --n {n}: the other {n - written:,} samples would need about "
            f"{resources.size_text(int(needed))} in {str(out)!r}, which has "
            f"{resources.size_text(free)} free; stopped after writing {written:,} "
            "(kept). Ask for fewer, or write them where there is room (--out)")


def sample_run(run: RunDir | LoadedRun, n: int, seed: int = 1234, out: Path | None = None,
               echo=print, batch_size: int = 256, options: dict[str, Any] | None = None,
               condition: ConditionValue | None = None, given_as: str = "--condition",
               size: str | None = None) -> Path:
    """Draw ``n`` samples and write each as a file plus a preview grid: ``dgm sample``.
    Samples are written batch by batch as they are drawn, so ``n`` is bounded by the
    disk, not the memory. ``condition`` (given on the command line as ``given_as``) is
    what every sample is drawn for; without one, a model conditioned on tokens or a
    tensor draws for the evaluation split's conditions (see :func:`default_conditions`),
    which are written beside the samples as ``conditions.pt``."""
    loaded = run if isinstance(run, LoadedRun) else LoadedRun.open(run)
    out = Path(out) if out else loaded.run.samples_dir
    options = dict(options or {})
    one = None if condition is None else condition_value(loaded, condition, given_as)
    inside = loaded.run.path.resolve() in [out.resolve(), *out.resolve().parents]
    with run_folder_lock(loaded.run.path, "dgm sample") if inside else nullcontext():
        conditions = default_conditions(loaded, n) if one is None else None
        if conditions is not None:
            _check_conditions_fit(loaded, n)
            out.mkdir(parents=True, exist_ok=True)
            torch.save(conditions(0, n), out / "conditions.pt")
        batches = _batches(loaded, n, seed, batch_size, options, one, size, conditions)
        grid = write_samples(loaded, batches, out, n=n, echo=echo if n > batch_size else None)
    echo(f"wrote {n} samples and {grid}")
    return grid


def _check_conditions_fit(loaded: LoadedRun, n: int) -> None:
    needed = resources.shape_bytes(n, tuple(loaded.info.condition.shape))
    limit = resources.memory_limit(loaded.recipe.train.max_memory_gb) // 4
    if needed > limit:
        raise RecipeError(f"dgm sample --n {n}: the conditions of {n:,} samples (saved as "
                          f"conditions.pt) would take {resources.size_text(needed)}; ask for "
                          f"at most {limit // max(needed // n, 1):,} at once")


__all__ = ["class_index", "condition_value", "draw_samples", "iter_samples", "sample",
           "sample_run", "write_samples"]
