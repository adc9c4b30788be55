"""Held-out likelihood, reported the same way for every family: nats per example and
bits per dimension, with a statement of whether the number is exact or a bound; and
weight-free sample metrics, each next to the same metric between two real sets."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from dgm.assembly import build_data
from dgm.contract import DataSource, Family, Modality, as_batch
from dgm.errors import RecipeError, RecipeWarning
from dgm.loaded_run import LoadedRun
from dgm.plugins import get_registry
from dgm.recipes import EvaluateConfig, Recipe
from dgm.registry import Entry, Registry
from dgm.run_lock import run_folder_lock
from dgm.runs import RunDir, write_json
from dgm.sampling import draw_samples
from dgm.settings import bind

COPY_REFERENCE_MAX = 5000
"""At most this many training examples form the reference of a memorisation metric."""


CONTINUOUS_NOTE = ("continuous data: the NLL is of a density, so it depends on the data's "
                   "scale and can be negative; compare it only with densities of the same "
                   "data, never with NLLs of discrete data")


def bits_per_dim(nll_nats: float, dims: int) -> float:
    return nll_nats / (dims * math.log(2))


@torch.no_grad()
def evaluate_likelihood(family: Family, data: DataSource, config: EvaluateConfig,
                        device: torch.device, where: str = "[evaluate.likelihood]",
                        seed: int = 0) -> dict[str, Any]:
    """Mean negative log-likelihood of ``data`` under ``family``."""
    info = data.info
    report: dict[str, Any] = {"family": type(family).__name__, "split": config.split,
                              "kind": family.likelihood_kind, "dims": info.dims}
    if info.levels:
        uniform = info.dims * math.log(info.levels)
        report["uniform_nll_nats"] = uniform
    if family.likelihood_kind == "none":
        report["note"] = "implicit model: it defines no likelihood; see the sample metrics"
        return report
    if not info.levels:
        report["note"] = CONTINUOUS_NOTE
    settings = bind(family.log_likelihood, config.likelihood, where, provided=("x", "c"))
    if family.conditional:
        report["condition"] = info.condition.kind
    if config.max_examples:
        data = Subset(data, range(min(config.max_examples, len(data))))
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=False)
    family.eval()
    torch.manual_seed(seed)
    values, method = [], ""
    start = time.perf_counter()
    for batch in loader:
        batch = as_batch(batch)
        given = {"c": batch["c"].to(device)} if family.conditional else {}
        result = family.log_likelihood(batch["x"].to(device), **given, **settings)
        values.append(result.values.double().cpu())
        method = result.method
    log_p = torch.cat(values)
    nll = float(-log_p.mean())
    report.update({
        "method": method + (f", given c ({info.condition.kind})" if family.conditional
                            else ""),
        "examples": int(log_p.numel()),
        "nll_nats": nll,
        "nll_nats_stderr": float(log_p.std() / math.sqrt(log_p.numel())),
        "bits_per_dim": bits_per_dim(nll, info.dims),
        "seconds": time.perf_counter() - start,
    })
    return report


def _examples(data: DataSource, indices: Tensor) -> Tensor:
    return torch.stack([data[int(i)]["x"] for i in indices])


@torch.no_grad()
def evaluate_samples(family: Family, metrics: Mapping[str, Callable[..., float]],
                     heldout: DataSource, train: DataSource, config: EvaluateConfig,
                     where: str = "[evaluate] metrics", seed: int = 0
                     ) -> dict[str, Any]:
    """Each metric for generated samples and, as a yardstick, for two disjoint real sets.

    ``n = min(metric_samples, len(heldout), len(train))`` (half the training split when
    the evaluation split is the training split). A metric against held-out data compares
    n samples with n held-out examples; its reference compares those held-out examples
    with n training examples. A metric with ``against = "train"`` compares n samples with
    the training examples (at most ``COPY_REFERENCE_MAX``); its reference compares the n
    held-out examples with the same training examples. Real examples are drawn at random
    with ``seed``, so the numbers are repeatable. A model conditioned on tokens or a
    tensor draws its samples for the conditions of those n real examples.
    """
    generator = torch.Generator().manual_seed(seed)
    same_split = config.split == "train"
    if same_split:  # two disjoint halves of one split
        order = torch.randperm(len(train), generator=generator)
        n = min(config.metric_samples, len(train) // 2)
        held_idx, train_order = order[:n], order[n:]
    else:
        n = min(config.metric_samples, len(heldout), len(train))
        held_idx = torch.randperm(len(heldout), generator=generator)[:n]
        train_order = torch.randperm(len(train), generator=generator)
    if n < 2:
        raise RecipeError(f"{where}: sample metrics need at least 2 examples per set; "
                          f"evaluate.metric_samples={config.metric_samples} and the splits "
                          f"hold {len(heldout)} and {len(train)}")
    if n < min(config.metric_samples, FEW_METRIC_SAMPLES):
        warnings.warn(f"{where}: the sample metrics compare only {n} examples per set "
                      f"(evaluate.metric_samples = {config.metric_samples}, but the "
                      f"{'training' if same_split else config.split} split holds "
                      f"{len(train) if same_split else len(heldout)}); with so few, kernel "
                      "MMD and the others are mostly noise (an MMD can come out below 0). "
                      "Give the folder more files or a larger split (data.test_fraction, "
                      "data.val_fraction)", RecipeWarning, stacklevel=2)
    real = _examples(train if same_split else heldout, held_idx)
    train_slice = _examples(train, train_order[:n])
    train_pool = _examples(train, train_order[:COPY_REFERENCE_MAX])
    conditions = None  # a token or tensor condition cannot be drawn: the real ones
    if family.conditional and heldout.info.condition.kind not in ("none", "class"):
        source = train if same_split else heldout
        conditions = torch.stack([source[int(i)]["c"] for i in held_idx])
    samples = draw_samples(family, n, config.batch_size, seed, conditions=conditions)
    split = "train" if same_split else config.split
    out: dict[str, dict[str, Any]] = {}
    for name, metric in metrics.items():
        against_train = getattr(metric, "against", "heldout") == "train"
        try:
            if against_train:
                model, reference = metric(samples, train_pool), metric(real, train_pool)
                what = (f"model: {n} samples vs {len(train_pool)} train examples; real: "
                        f"{n} {split} examples vs the same train examples")
            else:
                model, reference = metric(samples, real), metric(real, train_slice)
                what = (f"model: {n} samples vs {n} {split} examples; real: those {split} "
                        f"examples vs {n} train examples")
        except ValueError as exc:
            raise RecipeError(f"{where}: metric {name!r} cannot compare these examples: "
                              f"{exc}") from None
        out[name] = {"model": float(model), "real_vs_real": float(reference),
                     "reference": what}
    return {"metric_samples": n, "metrics": out}


FEW_METRIC_SAMPLES = 32
"""Below this many examples per set, sample metrics are reported with a warning."""


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


def evaluate_run(run: RunDir | LoadedRun) -> dict[str, Any]:
    """Held-out NLL in nats and bits per dimension, then the sample metrics next to their
    real-vs-real references: ``dgm evaluate``. Writes ``evaluation.json`` in the run
    folder and returns the report (:func:`dgm.reporting.format_table` shows it)."""
    registry = get_registry()
    loaded = run if isinstance(run, LoadedRun) else LoadedRun.open(run, registry)
    with run_folder_lock(loaded.run.path, "dgm evaluate"):
        return _evaluate(loaded, registry)


def _evaluate(loaded: LoadedRun, registry: Registry) -> dict[str, Any]:
    family, recipe = loaded.family, loaded.recipe
    config = recipe.evaluate
    data = build_data(recipe, registry, config.split)
    device = next(family.parameters()).device
    report = evaluate_likelihood(family, data, config, device,
                                 where=recipe.where("[evaluate.likelihood]"))
    entries = metric_entries(recipe, registry, loaded.modality)
    if entries:
        where = recipe.where("[evaluate] metrics")
        metrics = {e.name: e.obj() for e in entries}
        train = data if config.split == "train" else build_data(recipe, registry, "train")
        report.update(evaluate_samples(family, metrics, data, train, config, where=where))
    report["recipe"] = recipe.run.name
    report["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_json(loaded.run.evaluation_file, report)
    return report
