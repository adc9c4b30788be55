"""What a person reads: the evaluation as a terminal table and a Markdown table, the loss
curve as a PNG, and the run's summary.md."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dgm.evaluation import CONTINUOUS_NOTE
from dgm.runs import RunDir, write_text_atomic


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
    write_text_atomic(run.summary_file, "\n".join(lines))


__all__ = ["format_report", "format_table", "plot_loss", "write_summary"]
