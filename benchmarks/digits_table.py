"""Benchmark: every family on the embedded 8x8 digits, one likelihood table.

Each row trains one shipped recipe with ``dgm run`` (its own settings, 2 CPU cores,
budget 15 minutes of training), then ``dgm evaluate`` reports the test NLL in nats per
image of the discrete 17-level data (uniform model: 64 ln 17 = 181.3 nats), bits per
dimension, whether the number is exact or a bound, and the sample metrics next to their
real-vs-real references. The latent-diffusion row trains a diffusion prior over the VAE
row's latents; its NLL is a bound on the density of latent vectors, not of images, so
it does not compare with the other rows.

Run by hand from the repository root (about an hour on 2 cores)::

    .venv/bin/python benchmarks/digits_table.py                 # all rows
    .venv/bin/python benchmarks/digits_table.py --only flow gan # some rows, merged in
    .venv/bin/python benchmarks/digits_table.py --reuse         # re-tabulate saved runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine, timed_dgm_run  # noqa: E402

from dgm.reporting import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_S = 15 * 60

ROWS: dict[str, dict[str, Any]] = {
    "autoregressive": {"recipe": "recipes/image/digits-pixelcnn.toml", "target": 85.0},
    "vae": {"recipe": "recipes/image/digits-vae.toml", "target": 93.0},
    "flow": {"recipe": "recipes/image/digits-flow.toml", "target": 110.0},
    "diffusion": {"recipe": "recipes/image/digits-diffusion.toml", "target": 130.0},
    "gan": {"recipe": "recipes/image/digits-gan.toml", "target": None},
    "latent-diffusion": {"recipe": "recipes/image/digits-latent-diffusion.toml",
                         "target": None, "needs": "vae"},
}


def train(name: str, runs: Path, reuse: bool) -> dict[str, Any]:
    """Train and evaluate one row with ``dgm run``; return its timings."""
    row = ROWS[name]
    overrides = [f"data.run={runs / row['needs']}"] if "needs" in row else []
    return timed_dgm_run(row["recipe"], runs / name, overrides, reuse, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-digits")
    parser.add_argument("--note", default="",
                        help="a remark on the conditions of this run, kept in the results")
    parser.add_argument("--reuse", action="store_true",
                        help="use runs already trained in --runs instead of retraining")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS / "digits_table.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    rows = {r["row"]: r for r in previous.get("rows", [])}
    for name in args.only:
        if "needs" in ROWS[name] and not (args.runs / ROWS[name]["needs"]).is_dir():
            raise SystemExit(f"{name} needs the {ROWS[name]['needs']} row: run it first")
        print(f"training {name} ({ROWS[name]['recipe']}) ...", flush=True)
        timings = train(name, args.runs, args.reuse)
        report = json.loads((args.runs / name / "evaluation.json").read_text())
        target = ROWS[name]["target"]
        before = rows.get(name)
        rows[name] = {
            "row": name, "recipe": ROWS[name]["recipe"], "report": report,
            "steps": timings["steps"], "train_seconds": timings["train_seconds"],
            "run_seconds": timings["run_seconds"], "torch_threads": timings["torch_threads"],
            "within_budget": timings["train_seconds"] <= BUDGET_S,
            "target_nll_nats": target,
            "meets_target": None if target is None else report["nll_nats"] <= target,
            "machine": machine(),
        }
        if before is not None:  # what this row measured last time, to quote beside it
            rows[name]["previous"] = {"nll_nats": before["report"].get("nll_nats"),
                                      "train_seconds": before["train_seconds"],
                                      "date": before.get("machine", {}).get("date")}
        print(f"  {timings['train_seconds']:.0f} s training, NLL "
              f"{report.get('nll_nats', float('nan')):.2f}", flush=True)
    ordered = [rows[n] for n in ROWS if n in rows]
    out = {"benchmark": "digits_table", "machine": machine(),
           "settings": {"budget_seconds": BUDGET_S, "threads": os.cpu_count(),
                        "data": "image:digits, train 1000 / test 447, 17 levels",
                        "note": args.note},
           "rows": ordered}
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out)
    print((RESULTS / "digits_table.md").read_text())


def write_markdown(out: dict[str, Any]) -> None:
    m = out["machine"]
    table = format_table([r["report"] for r in out["rows"]])
    timing = ["| row | recipe | steps | torch threads | training (s) | whole `dgm run` (s) "
              "| target NLL | meets target |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in out["rows"]:
        target = "-" if r["target_nll_nats"] is None else f"<= {r['target_nll_nats']:.0f}"
        meets = {None: "-", True: "yes", False: "NO"}[r["meets_target"]]
        timing.append(f"| {r['row']} | `{r['recipe']}` | {r['steps']} | {r['torch_threads']} | "
                      f"{r['train_seconds']:.0f} | {r['run_seconds']:.0f} | {target} | {meets} |")
    text = "\n".join([
        "# digits_table: every family on 8x8 digits (test split, 447 images)", "",
        f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs, {m['torch_threads']} torch "
        f"threads; torch {m['torch']}, diffusers {m['diffusers']}. NLL in nats per image "
        "of the 17-level data (uniform model 181.3); each row's training budget is 15 "
        "minutes on 2 CPU cores. The latent-diffusion NLL is a bound on the density of "
        "VAE latent vectors, not comparable with the image rows.",
        *(["", out["settings"]["note"]] if out["settings"].get("note") else []), "",
        table, "", *timing, ""])
    (RESULTS / "digits_table.md").write_text(text)


if __name__ == "__main__":
    main()
