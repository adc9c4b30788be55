"""Held-out likelihood, reported the same way for every family: nats per example and
bits per dimension, with a statement of whether the number is exact or a bound; and
weight-free sample metrics, each next to the same metric between two real sets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from dgm.contract import DataSource, Family, as_batch
from dgm.errors import RecipeError
from dgm.recipes import EvaluateConfig
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
    with ``seed``, so the numbers are repeatable.
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
    real = _examples(train if same_split else heldout, held_idx)
    train_slice = _examples(train, train_order[:n])
    train_pool = _examples(train, train_order[:COPY_REFERENCE_MAX])
    samples = draw_samples(family, n, config.batch_size, seed)
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


def draw_samples(family: Family, n: int, batch_size: int, seed: int,
                 options: Mapping[str, Any] | None = None,
                 condition: Tensor | int | None = None) -> Tensor:
    """``n`` samples on the CPU, drawn in batches with a seeded generator; ``options`` are
    the family's own sampling keywords (a diffusion sampler and its steps); ``condition``
    is one raw condition (a class index, or a tensor shaped like one example's ``c``)
    every sample is drawn for (None: the family's default)."""
    device = next(family.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    family.eval()
    options = dict(options or {})
    one = None if condition is None else torch.as_tensor(condition).to(device)

    def given(m: int) -> dict[str, Tensor]:  # passed only when there is a condition
        if one is None:
            return {}
        return {"condition": one.unsqueeze(0).expand(m, *one.shape).clone()}

    chunks = [family.sample(min(batch_size, n - start), generator=generator,
                            **given(min(batch_size, n - start)), **options).cpu()
              for start in range(0, n, batch_size)]
    return torch.cat(chunks).float()


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as a small table for the terminal and the summary."""
    rows = [("family", report["family"]), ("split", report["split"]),
            ("likelihood", report["kind"])]
    if report["kind"] == "none":
        rows.append(("note", report["note"]))
    else:
        rows += [
            ("method", report["method"]),
            ("examples", str(report["examples"])),
            ("NLL (nats/example)", f"{report['nll_nats']:.2f} ± {report['nll_nats_stderr']:.2f}"),
            ("bits/dim", f"{report['bits_per_dim']:.4f}"),
        ]
        if "note" in report:
            rows.append(("note", report["note"]))
    if "uniform_nll_nats" in report:
        rows.append(("uniform model (nats)", f"{report['uniform_nll_nats']:.2f}"))
    if report.get("metrics"):
        rows.append(("sample metrics", f"{' model':<10} real vs real  "
                     f"({report.get('metric_samples', '?')} per set)"))
        for name, m in report["metrics"].items():
            rows.append((f"  {name}", f"{m['model']:< 10.4f}{m['real_vs_real']: .4f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def format_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table, a row per evaluated run: family, exact or bound, NLL in nats
    per example, bits per dimension, and each sample metric as ``model (real vs real)``.
    """
    names: list[str] = []
    for report in reports:
        names += [m for m in report.get("metrics", {}) if m not in names]
    header = ["run", "family", "likelihood", "NLL (nats/example)", "bits/dim",
              *[f"{m} (real vs real)" for m in names]]
    rows = []
    for report in reports:
        if report["kind"] == "none":
            kind, nll, bpd = "none (implicit)", "-", "-"
        else:
            kind = f"{report['kind']}: {report['method']}"
            nll = f"{report['nll_nats']:.2f} ± {report['nll_nats_stderr']:.2f}"
            bpd = f"{report['bits_per_dim']:.3f}"
        cells = [report.get("recipe", "?"), report["family"], kind, nll, bpd]
        for name in names:
            m = report.get("metrics", {}).get(name)
            cells.append(f"{m['model']:.4g} ({m['real_vs_real']:.4g})" if m else "-")
        rows.append(cells)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
             for r in [header, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes: list[str] = []
    for report in reports:
        parts = []
        if "examples" in report:
            parts.append(f"NLL over {report['examples']} {report['split']} examples")
        if "uniform_nll_nats" in report:
            parts.append(f"uniform model over the data's levels "
                         f"{report['uniform_nll_nats']:.2f} nats/example")
        if "metric_samples" in report:
            parts.append(f"sample metrics from {report['metric_samples']} per set")
        if report.get("note") == CONTINUOUS_NOTE:
            parts.append(f"{report.get('recipe', '?')}: {CONTINUOUS_NOTE}")
        notes += [part for part in parts if part not in notes]
    notes = ["; ".join(notes)] if notes else []
    return "\n".join(lines + [""] * bool(notes) + notes)
