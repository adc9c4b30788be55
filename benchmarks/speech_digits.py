"""Benchmark: the speech recipes on the embedded spoken digits.

Rows:

- ``diffusion``: trains recipes/speech/digits-mel-diffusion.toml (class-conditional
  log-mel diffusion, Griffin-Lim inversion) with ``dgm run`` (budget: 30 minutes of
  training on 2 CPU cores), then scores it with the project's digit classifier
  (``dgm_audio.intelligibility``): accuracy on 10 generated clips per digit (target at
  least 80 %) next to the classifier's accuracy on the real, unseen test voices, and the
  real-time factor of generation (seconds of compute per second of audio, sampling plus
  Griffin-Lim; target below 1). The spectral distances come from ``dgm run``'s
  evaluation (64 samples against 64 test clips, next to real vs real).
- ``wavenet``: trains recipes/speech/digits-mulaw-wavenet.toml and reports its exact
  test NLL in bits per sample (8-bit mu-law at 4 kHz; the uniform model is 8 bits).

Run by hand from the repository root (about 30 minutes on 2 cores)::

    .venv/bin/python benchmarks/speech_digits.py
    .venv/bin/python benchmarks/speech_digits.py --only wavenet --steps wavenet=500
    .venv/bin/python benchmarks/speech_digits.py --reuse     # re-score saved runs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine, timed_dgm_run  # noqa: E402

from dgm.reporting import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_S = 30 * 60
ROWS = {"diffusion": "recipes/speech/digits-mel-diffusion.toml",
        "wavenet": "recipes/speech/digits-mulaw-wavenet.toml"}


def train(name: str, run: Path, steps: int | None, reuse: bool) -> dict[str, Any]:
    """Train and evaluate one row with ``dgm run``; return its timings."""
    overrides = [f"train.steps={steps}"] if steps else []
    return timed_dgm_run(ROWS[name], run, overrides, reuse, cwd=ROOT)


def main() -> None:
    from dgm_audio.intelligibility import score_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-speech")
    parser.add_argument("--steps", nargs="*", default=[], metavar="ROW=STEPS",
                        help="train a row for this many steps instead of its recipe's")
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    steps = {k: int(v) for k, v in (item.split("=") for item in args.steps)}
    results_file = RESULTS / "speech_digits.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    rows = previous.get("rows", {})
    for name in args.only:
        run = args.runs / name
        print(f"training {name} ({ROWS[name]}) ...", flush=True)
        timings = train(name, run, steps.get(name), args.reuse)
        report = json.loads((run / "evaluation.json").read_text())
        row = {"recipe": ROWS[name], **timings, "report": report,
               "within_budget": timings["train_seconds"] <= BUDGET_S, "machine": machine()}
        if name in rows:  # what this row measured last time, to quote beside it
            before = rows[name]
            row["previous"] = {
                "nll_nats": before["report"].get("nll_nats"),
                "train_seconds": before.get("train_seconds"),
                "accuracy_on_generated": before.get("intelligibility", {}).get(
                    "accuracy_on_generated"),
                "date": before.get("machine", {}).get("date")}
        if name == "diffusion":
            score = score_run(run, n_per_class=10, out=run / "per-digit")
            row["intelligibility"] = score
            row["meets_accuracy_target"] = score["accuracy_on_generated"] >= 0.8
            row["meets_rtf_target"] = score["real_time_factor"] < 1
        rows[name] = row
    out = {"benchmark": "speech_digits", "machine": machine(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out)
    print((RESULTS / "speech_digits.md").read_text())


def write_markdown(out: dict[str, Any]) -> None:
    m = out["machine"]
    rows = out["rows"]
    lines = ["# speech_digits: speech recipes on the embedded spoken digits", "",
             f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs, {m['torch_threads']} "
             f"torch threads; torch {m['torch']}, diffusers {m['diffusers']}.", "",
             format_table([r["report"] for r in rows.values()]), "",
             "Each sample metric is computed in its run's representation (the diffusion "
             "row on normalised log-mel, the WaveNet row on the companded mu-law "
             "waveform), so compare a figure with its real-vs-real reference, not across "
             "rows.", "",
             "| row | steps | training (s) | within 30 min |", "|---|---:|---:|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps']} | {r['train_seconds']:.0f} | "
                     f"{'yes' if r['within_budget'] else 'NO'} |")
    if "diffusion" in rows and "intelligibility" in rows["diffusion"]:
        s = rows["diffusion"]["intelligibility"]
        per_class = ", ".join(f"{k} {v:.0%}" for k, v in s["per_class"].items())
        lines += ["", "Conditional diffusion, heard by the project's digit classifier "
                  f"({s['n_per_class']} samples per digit): **{s['accuracy_on_generated']:.1%}"
                  f"** correct (target >= 80 %); the classifier's accuracy on the real, "
                  f"unseen test voices is {s['classifier_accuracy_real_test_voices']:.1%}. "
                  f"Per digit: {per_class}. Real-time factor of generation (DPM-Solver++ "
                  f"sampling plus Griffin-Lim): {s['real_time_factor']:.3f} (target < 1)."]
    if "wavenet" in rows:
        r = rows["wavenet"]["report"]
        lines += ["", f"WaveNet on 8-bit mu-law at 4 kHz: exact test NLL "
                  f"**{r['bits_per_dim']:.3f} bits per sample** (uniform: 8)."]
    (RESULTS / "speech_digits.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
