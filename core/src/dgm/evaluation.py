"""Held-out likelihood, reported the same way for every family: nats per example and
bits per dimension, with a statement of whether the number is exact or a bound."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from dgm.contract import DataSource, Family
from dgm.recipes import EvaluateConfig
from dgm.settings import bind


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
    settings = bind(family.log_likelihood, config.likelihood, where, provided=("x",))
    if config.max_examples:
        data = Subset(data, range(min(config.max_examples, len(data))))
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=False)
    family.eval()
    torch.manual_seed(seed)
    values, method = [], ""
    start = time.perf_counter()
    for batch in loader:
        result = family.log_likelihood(batch["x"].to(device), **settings)
        values.append(result.values.double().cpu())
        method = result.method
    log_p = torch.cat(values)
    nll = float(-log_p.mean())
    report.update({
        "method": method,
        "examples": int(log_p.numel()),
        "nll_nats": nll,
        "nll_nats_stderr": float(log_p.std() / math.sqrt(log_p.numel())),
        "bits_per_dim": bits_per_dim(nll, info.dims),
        "seconds": time.perf_counter() - start,
    })
    return report


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
    if "uniform_nll_nats" in report:
        rows.append(("uniform model (nats)", f"{report['uniform_nll_nats']:.2f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
