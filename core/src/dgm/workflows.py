"""``dgm run``: a recipe trained into a run folder, in three steps a reader can follow:
:func:`prepare` (read and check the recipe, build the data, the family and the trainer,
claim the run folder), :func:`fit` (train, resuming where a checkpoint exists) and
:func:`finish` (save the final weights, then sample, evaluate and report from them as
``dgm sample`` and ``dgm evaluate`` would)."""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch.utils.data import default_collate

from dgm import resources
from dgm.assembly import build_data, build_family, build_modality
from dgm.contract import DataSource, Family, Modality, as_batch
from dgm.errors import RecipeError
from dgm.evaluation import evaluate_run, metric_entries
from dgm.loaded_run import LoadedRun
from dgm.plugins import get_registry
from dgm.recipes import Recipe, read_recipe, resolved, with_defaults
from dgm.registry import Registry
from dgm.reporting import format_table, plot_loss, write_summary
from dgm.run_lock import run_folder_lock
from dgm.runs import RunDir, prepare_run_dir, run_dir_for, write_text_atomic
from dgm.sampling import sample_run
from dgm.settings import bind
from dgm.training import Trainer, TrainResult, enable_gradient_checkpointing


def find_recipe(name_or_path: str, registry: Registry) -> Path:
    """A recipe file path, or the file a plugin registered under that name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        return path
    return Path(registry.get("recipes", name_or_path, where="dgm run").obj)


@dataclass
class PreparedRun:
    """Everything :func:`fit` and :func:`finish` need, built and checked by
    :func:`prepare` before any training step."""

    recipe: Recipe
    registry: Registry
    run: RunDir
    train_data: DataSource
    family: Family
    trainer: Trainer
    held: ExitStack = field(default_factory=ExitStack)
    """The run folder's lock (main process), released by :meth:`close`."""

    @property
    def is_main_process(self) -> bool:
        return self.trainer.accelerator.is_main_process

    def close(self) -> None:
        """Release the run folder."""
        self.held.close()


def prepare(recipe_ref: str, overrides: list[str], echo=print,
            allow_outside: bool = False) -> PreparedRun:
    """Read the recipe, check everything that can be checked before training (names,
    settings, where the run folder is, the likelihood's support, the evaluation's
    settings, the run folder's contents), and build the data, the family and the
    trainer. ``allow_outside`` lets ``run.dir`` lie outside the current folder."""
    registry = get_registry()
    recipe = read_recipe(find_recipe(recipe_ref, registry), overrides)
    recipe.validate(registry)
    run = run_dir_for(recipe, allow_outside)  # before anything is built
    built: dict[tuple[str, ...], dict[str, Any]] = {}  # what was built, defaults included
    train_data = build_data(recipe, registry, "train", record=built)
    modality = build_modality(train_data.info, registry)
    if recipe.evaluate.metrics is None:  # write the modality's default into the run
        recipe.tables.setdefault("evaluate", {})["metrics"] = list(modality.metrics)
    recipe = resolved(recipe)
    metric_entries(recipe, registry)  # unknown names fail now, not after training
    check_training_memory(recipe, registry, train_data)
    set_seed(recipe.run.seed)  # initial weights follow run.seed
    try:
        family = build_family(recipe, registry, train_data.info, record=built)
    except RuntimeError as exc:  # torch.OutOfMemoryError is one too
        if "alloc" not in str(exc).lower():
            raise
        raise RecipeError(f"{_model_settings(recipe)}: the family's networks do not fit in "
                          f"this machine's memory ({str(exc).strip().splitlines()[-1]}); "
                          "nothing was written. Make the networks or the latent smaller, "
                          "or train on a machine with more memory") from None
    _check_likelihood_support(family, train_data, recipe)
    recipe = with_defaults(recipe, built)
    if family.likelihood_kind != "none":  # fail now, not after training
        bind(family.log_likelihood, recipe.evaluate.likelihood,
             recipe.where("[evaluate.likelihood]"), provided=("x",))
    trainer = Trainer(family, train_data, run, recipe.train, recipe.data_loading,
                      seed=recipe.run.seed)
    held = ExitStack()
    try:
        with trainer.accelerator.main_process_first():
            if trainer.accelerator.is_main_process:  # check, lock, check again, write
                prepare_run_dir(recipe, run, write=False)
                held.enter_context(run_folder_lock(run.path, "dgm run"))
            prepare_run_dir(recipe, run, write=trainer.accelerator.is_main_process)
    except BaseException:
        held.close()
        raise
    prepared = PreparedRun(recipe, registry, run, train_data, family, trainer, held)
    n_params = sum(p.numel() for p in family.parameters())
    if prepared.is_main_process:
        echo(f"run folder: {run.path}  ({type(family).__name__}, {n_params:,} parameters, "
             f"{len(train_data)} training examples)")
    return prepared


def fit(prepared: PreparedRun, echo=print) -> TrainResult:
    """Train to ``train.steps`` (resuming from the newest checkpoint in the folder)."""
    result = prepared.trainer.fit()
    if not prepared.is_main_process:
        return result
    if result.resumed_from and result.resumed_from >= result.steps:
        logged = [r["loss"] for r in prepared.run.read_metrics() if "loss" in r]
        last = f" (last logged loss {logged[-1]:.3f})" if logged else ""
        echo(f"already trained to step {result.steps}{last}: nothing left to train; "
             "sampling and evaluating again (raise train.steps to train on)")
        return result
    if result.resumed_from:
        echo(f"resumed from step {result.resumed_from}")
    echo(f"trained to step {result.steps} in {result.seconds:.1f} s "
         f"(last logged loss {result.last_loss:.3f})")
    return result


def finish(prepared: PreparedRun, echo=print) -> LoadedRun:
    """Save the final weights and the data info, then, from the saved files (as
    ``dgm sample`` and ``dgm evaluate`` read them), write the samples, the evaluation,
    the loss curve and summary.md. Main process only."""
    run, recipe = prepared.run, prepared.recipe
    run.write_data_info(prepared.train_data.info)
    prepared.trainer.save_weights()
    write_text_atomic(run.model_dir / "recipe.toml", recipe.to_toml())
    loaded = LoadedRun.open(run, prepared.registry)
    sample_run(loaded, n=recipe.sample.n, seed=recipe.sample.seed, echo=echo)
    echo(format_table([evaluate_run(loaded)]))
    plot_loss(run)
    write_summary(run)
    echo(f"summary: {run.summary_file}")
    return loaded


def run_recipe(recipe_ref: str, overrides: list[str], echo=print,
               allow_outside: bool = False) -> RunDir:
    """Train, sample and evaluate: ``dgm run``. One process speaks for a multi-process
    run and finishes it. ``allow_outside``: see :func:`prepare`."""
    prepared = prepare(recipe_ref, overrides, echo, allow_outside)
    try:
        fit(prepared, echo)
        if prepared.is_main_process:
            finish(prepared, echo)
    finally:
        prepared.close()
    return prepared.run


def check_training_memory(recipe: Recipe, registry: Registry, data: DataSource) -> None:
    """Refuse, before anything is allocated, a recipe whose family and one batch's
    training need more memory than ``train.max_memory_gb`` allows (see
    :mod:`dgm.resources`)."""
    family = resources.on_meta(lambda: build_family(recipe, registry, data.info,
                                                    warn_unused=False))
    if family is None:
        return
    n = min(len(data), recipe.data_loading.batch_size)
    batch = as_batch(default_collate([data[i] for i in range(n)]))
    train = recipe.train
    if train.gradient_checkpointing:  # its activations are the ones training will keep
        enable_gradient_checkpointing(family)
    states = (2 if train.optimizer != "sgd" else 1 if train.momentum else 0)
    needed = resources.estimate(family, batch, ema=train.ema, optimizer_states=states)
    limit = resources.memory_limit(recipe.train.max_memory_gb)
    activations = (f" and {resources.size_text(needed.activation_bytes)} of activations "
                   f"for a batch of {n}" if needed.activation_bytes else "")
    resources.check_fits(
        needed.training_bytes, limit,
        f"training {type(family).__name__} ({needed.parameters:,} parameters: "
        f"{resources.size_text(needed.weight_bytes)} of weights, with gradients, "
        f"optimizer state{' and EMA' if recipe.train.ema else ''}{activations})",
        _model_settings(recipe),
        "Make the networks or the latent smaller (dgm show --kind networks NAME lists "
        "their settings), lower data.batch_size, or raise train.max_memory_gb if the "
        "machine really has the memory")


def _model_settings(recipe: Recipe) -> str:
    """Where the settings that size a model came from: the recipe file, and the
    command-line overrides of [family] and [networks] if any."""
    given = list(dict.fromkeys(item for path, item in recipe.overridden.items()
                               if path[0] in ("family", "networks", "data")))
    return f"{recipe.source}: [family] and [networks]" + (
        f" with {', '.join(given)}" if given else "")


def _check_likelihood_support(family: Family, data: Any, recipe: Recipe) -> None:
    likelihood = getattr(family, "likelihood", None)
    if likelihood is None:
        return
    x = torch.stack([data[i]["x"] for i in range(min(len(data), 256))])
    try:
        likelihood.check_data(x)
    except ValueError as exc:
        raise RecipeError(f"{recipe.where('[likelihood]')}: {exc}") from None


def load_family(run: RunDir, registry: Registry | None = None
                ) -> tuple[Family, Modality, Recipe]:
    """Deprecated: ``LoadedRun.open(run)`` (``dgm.loaded_run``) gives the family, the
    modality, the recipe and the data info of a trained run."""
    warnings.warn("dgm.workflows.load_family is deprecated: use "
                  "dgm.loaded_run.LoadedRun.open(run) (.family, .modality, .recipe, .info)",
                  DeprecationWarning, stacklevel=2)
    loaded = LoadedRun.open(run, registry)
    return loaded.family, loaded.modality, loaded.recipe


__all__ = ["PreparedRun", "finish", "fit", "prepare", "run_recipe"]
