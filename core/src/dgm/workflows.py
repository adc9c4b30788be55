"""What the CLI commands do: train a recipe into a run folder, sample from a run, evaluate
a run. Each step reads and writes the run folder only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import set_seed
from safetensors.torch import load_model

from dgm.assembly import build_data, build_family, build_modality
from dgm.capabilities import SIZED_SAMPLING, has
from dgm.contract import Family, Modality
from dgm.errors import RecipeError, RunDirError
from dgm.evaluation import (
    draw_samples,
    evaluate_likelihood,
    evaluate_samples,
    format_report,
    format_table,
)
from dgm.plugins import get_registry
from dgm.recipes import Recipe, read_recipe, resolved
from dgm.registry import Entry, Registry
from dgm.runs import RunDir, write_json, write_text_atomic
from dgm.settings import bind, parameters
from dgm.sizes import parse_size
from dgm.training import Trainer

RESUMABLE_CHANGES = {("train", "steps"), ("run", "dir")}
"""Keys that may differ between a run folder's recipe and a command resuming it."""


def find_recipe(name_or_path: str, registry: Registry) -> Path:
    """A recipe file path, or the file a plugin registered under that name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        return path
    return Path(registry.get("recipes", name_or_path, where="dgm run").obj)


def run_dir_for(recipe: Recipe) -> RunDir:
    run = recipe.run
    return RunDir(Path(run.dir) if run.dir else Path("runs") / run.name)


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: tuple[str, ...] = ()
                 ) -> list[tuple[str, ...]]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = (*prefix, key)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, path)
        elif va != vb:
            out.append(path)
    return out


def prepare_run_dir(recipe: Recipe, run: RunDir, write: bool = True) -> None:
    """Create the run folder, or check that an existing one holds the same recipe.
    ``write=False`` only checks: the other processes of a multi-process run, which
    come after the main process has written the folder."""
    text = recipe.to_toml()
    if run.recipe_file.exists():
        saved = read_recipe(run.recipe_file)
        changed = [d for d in _differences(saved.tables, recipe.tables)
                   if d not in RESUMABLE_CHANGES]
        if changed:
            keys = ", ".join(".".join(d) for d in changed)
            raise RunDirError(
                f"run folder {str(run.path)!r} holds a run of a different recipe (differs in: "
                f"{keys}). Nothing was changed. Resume it with the same settings, or start a "
                f"new run with run.dir=<new folder> or run.name=<new name>"
            )
    elif run.path.exists() and any(run.path.iterdir()):
        raise RunDirError(f"{str(run.path)!r} exists and is not a dgm run folder; choose "
                          "another run.dir")
    if write:
        run.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.recipe_file, text)


def run_recipe(recipe_ref: str, overrides: list[str], echo=print) -> RunDir:
    """Train, sample and evaluate: ``dgm run``."""
    registry = get_registry()
    recipe = read_recipe(find_recipe(recipe_ref, registry), overrides)
    recipe.validate(registry)
    train_data = build_data(recipe, registry, "train")
    modality = build_modality(train_data.info, registry)
    if recipe.evaluate.metrics is None:  # write the modality's default into the run
        recipe.tables.setdefault("evaluate", {})["metrics"] = list(modality.metrics)
    recipe = resolved(recipe)
    metric_entries(recipe, registry)  # unknown names fail now, not after training
    run = run_dir_for(recipe)
    set_seed(recipe.run.seed)  # initial weights follow run.seed
    family = build_family(recipe, registry, train_data.info)
    _check_likelihood_support(family, train_data, recipe)
    if family.likelihood_kind != "none":  # fail now, not after training
        bind(family.log_likelihood, recipe.evaluate.likelihood,
             recipe.where("[evaluate.likelihood]"), provided=("x",))
    trainer = Trainer(family, train_data, run, recipe.train, recipe.data_loading,
                      seed=recipe.run.seed)
    with trainer.accelerator.main_process_first():
        prepare_run_dir(recipe, run, write=trainer.accelerator.is_main_process)
    if not trainer.accelerator.is_main_process:
        echo = _silent  # one process speaks for a multi-process run
    n_params = sum(p.numel() for p in family.parameters())
    echo(f"run folder: {run.path}  ({type(family).__name__}, {n_params:,} parameters, "
         f"{len(train_data)} training examples)")
    result = trainer.fit()
    if result.resumed_from:
        echo(f"resumed from step {result.resumed_from}")
    echo(f"trained to step {result.steps} in {result.seconds:.1f} s "
         f"(last logged loss {result.last_loss:.3f})")
    if not trainer.accelerator.is_main_process:
        return run
    run.write_data_info(train_data.info)
    trainer.save_weights()
    (run.model_dir / "recipe.toml").write_text(recipe.to_toml())
    loaded = load_family(run, registry)  # from the saved files, as `dgm sample` would
    sample_run(run, n=recipe.sample.n, seed=recipe.sample.seed, echo=echo, loaded=loaded)
    evaluate_run(run, echo=echo, loaded=loaded)
    plot_loss(run)
    write_summary(run)
    echo(f"summary: {run.summary_file}")
    return run


def _silent(*_: Any, **__: Any) -> None:
    """An echo that prints nothing."""


def _check_likelihood_support(family: Family, data: Any, recipe: Recipe) -> None:
    likelihood = getattr(family, "likelihood", None)
    if likelihood is None:
        return
    x = torch.stack([data[i]["x"] for i in range(min(len(data), 256))])
    try:
        likelihood.check_data(x)
    except ValueError as exc:
        raise RecipeError(f"{recipe.where('[likelihood]')}: {exc}") from None


Loaded = tuple[Family, Modality, Recipe]


def load_family(run: RunDir, registry: Registry | None = None) -> Loaded:
    """Rebuild a run's family from its recipe and load its final weights."""
    registry = registry or get_registry()
    recipe = read_recipe(run.recipe_file)
    info = run.read_data_info()
    family = build_family(recipe, registry, info, warn_unused=False)  # warned at training
    if not run.weights_file.is_file():
        raise RunDirError(f"run folder {str(run.path)!r} has no final weights "
                          f"({run.weights_file}); finish training with `dgm run`")
    try:
        load_model(family, str(run.weights_file), device="cpu")
    except RuntimeError as exc:  # the saved tensors do not fit the networks built now
        raise RunDirError(
            f"run folder {str(run.path)!r}: its weights ({run.weights_file}) do not fit the "
            f"networks its recipe builds now. Was it trained with another version of dgm or "
            f"of the plugins it uses ({_plugins_named(recipe)})? {_shortened(str(exc))}"
        ) from None
    device = PartialState().device  # where accelerate trains; no precision needed
    family.to(device).eval()
    return family, build_modality(info, registry), recipe


def _plugins_named(recipe: Recipe) -> str:
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


def sample_run(run: RunDir, n: int, seed: int = 1234, out: Path | None = None, echo=print,
               loaded: Loaded | None = None, batch_size: int = 256,
               options: dict[str, Any] | None = None, condition: str | None = None,
               size: str | None = None) -> Path:
    """Draw ``n`` samples, write each as a file and a preview grid: ``dgm sample``.
    ``options`` go to the family's ``sample`` (e.g. ``sampler``, ``steps``); ``condition``
    names a class of the run's data (``seven``) that every sample is drawn for; ``size``
    (``"1024x768"``, width x height) samples at another size than the training data's,
    where the family and its networks can (default: the recipe's ``[sample] size``)."""
    family, modality, recipe = loaded or load_family(run)
    options = dict(options or {})
    bind(family.sample, options, "dgm sample --option",
         provided=("n", "generator", "condition", "size"))
    size = size or recipe.sample.size
    if size:
        options["size"] = _sample_size(size, family, run)
    index = None if condition is None else condition_index(run, family, condition)
    try:
        samples = draw_samples(family, n, batch_size, seed, options, condition=index)
    except ValueError as exc:
        if "size" not in options:
            raise
        raise RecipeError(f"size {size!r} for run {str(run.path)!r}: {exc}") from None
    out = Path(out) if out else run.samples_dir
    out.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(samples):
        decoded = modality.representation.inverse(x)
        modality.write(decoded, out / f"sample-{i:04d}{modality.file_suffix}")
    grid = out / "grid.png"
    modality.preview(samples, grid)
    echo(f"wrote {n} samples and {grid}")
    return grid


def _sample_size(size: str, family: Family, run: RunDir) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` as (height, width), checked against the family's ``sample``."""
    try:
        parsed = parse_size(size)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    if not has(family, SIZED_SAMPLING):
        takes = (" (its sample takes size: declare capabilities = "
                 "frozenset({'sized-sampling'}) on the family)"
                 if "size" in parameters(family.sample) else "")
        raise RecipeError(f"size {size!r}: the {type(family).__name__} of run "
                          f"{str(run.path)!r} samples only at its training size{takes}")
    return parsed


def condition_index(run: RunDir, family: Family, name: str) -> int:
    """The class index of ``name`` (a class name, or its index) among the run's classes;
    an unknown name, data without classes, or a family trained without a condition is
    an error that says what the run accepts."""
    condition = run.read_data_info().condition
    if not family.conditional:
        raise RecipeError(f"--condition {name!r}: the {type(family).__name__} of run "
                          f"{str(run.path)!r} takes no condition (it was trained without "
                          "one; train with [condition] use = true)")
    if condition.kind != "class":
        raise RecipeError(f"--condition {name!r}: run {str(run.path)!r} is conditioned on "
                          f"{condition.describe()}, not on a class")
    classes = list(condition.classes)
    if name.isdigit() and int(name) < len(classes) and name not in classes:
        return int(name)
    if name not in classes:
        raise RecipeError(f"--condition {name!r} is not a class of run {str(run.path)!r}; "
                          f"its classes are: {', '.join(classes)}")
    return classes.index(name)


def metric_entries(recipe: Recipe, registry: Registry,
                   modality: Modality | None = None) -> list[Entry]:
    """The registered metrics ``[evaluate] metrics`` names (default: the modality's)."""
    names = recipe.evaluate.metrics
    if names is None:
        names = list(modality.metrics) if modality else []
    where = recipe.where("[evaluate] metrics")
    entries = [registry.get("metrics", name, where=where) for name in names]
    for entry in entries:  # named without settings, so every setting needs a default
        bind(entry.obj, {}, f"{where}: {entry.name}")
    if entries and recipe.evaluate.metric_samples < 2:
        raise RecipeError(f"{recipe.where('evaluate.metric_samples')}: should be at least 2 "
                          f"(two sets are compared), got {recipe.evaluate.metric_samples}; "
                          "set evaluate.metrics=[] to skip the sample metrics")
    return entries


def evaluate_run(run: RunDir, echo=print, loaded: Loaded | None = None) -> dict[str, Any]:
    """Held-out NLL in nats and bits per dimension, then the sample metrics next to their
    real-vs-real references: ``dgm evaluate``."""
    registry = get_registry()
    family, modality, recipe = loaded or load_family(run, registry)
    config = recipe.evaluate
    data = build_data(recipe, registry, config.split)
    device = next(family.parameters()).device
    report = evaluate_likelihood(family, data, config, device,
                                 where=recipe.where("[evaluate.likelihood]"))
    entries = metric_entries(recipe, registry, modality)
    if entries:
        where = recipe.where("[evaluate] metrics")
        metrics = {e.name: e.obj() for e in entries}
        train = data if config.split == "train" else build_data(recipe, registry, "train")
        report.update(evaluate_samples(family, metrics, data, train, config, where=where))
    report["recipe"] = recipe.run.name
    report["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_json(run.evaluation_file, report)
    echo(format_table([report]))
    return report


def plot_loss(run: RunDir) -> Path | None:
    """The loss curve from metrics.jsonl as a PNG."""
    records = [r for r in run.read_metrics() if "loss" in r]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in records], [r["loss"] for r in records])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(run.path.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run.loss_plot)
    plt.close(fig)
    return run.loss_plot


def write_summary(run: RunDir) -> None:
    """summary.md: the numbers and pictures a person looks at first."""
    lines = [f"# Run `{run.path.name}`", ""]
    if run.evaluation_file.exists():
        report = json.loads(run.evaluation_file.read_text())
        lines += ["## Evaluation", "", "```", format_report(report), "```", ""]
    records = [r for r in run.read_metrics() if "loss" in r]
    if records:
        last = records[-1]
        rate = [r["samples_per_sec"] for r in records if r.get("samples_per_sec")]
        speed = f", {sum(rate) / len(rate):.0f} samples/s" if rate else ""
        lines += ["## Training", "", f"{last['step']} steps, last loss {last['loss']:.3f}"
                  f"{speed}.", ""]
    if run.loss_plot.exists():
        lines += ["![loss](loss.png)", ""]
    if (run.samples_dir / "grid.png").exists():
        lines += ["## Samples", "", "![samples](samples/grid.png)", ""]
    lines += ["Recipe: [recipe.toml](recipe.toml); weights: model/model.safetensors; "
              "log: metrics.jsonl.", ""]
    run.summary_file.write_text("\n".join(lines))


__all__ = ["evaluate_run", "load_family", "run_recipe", "sample_run"]
