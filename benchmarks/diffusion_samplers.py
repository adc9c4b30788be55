"""Benchmark: one trained diffusion model, sampled by DDPM at 1000 steps and by DDIM and
DPM-Solver++ at 10, 20 and 50 steps.

Reports time per sample and two weight-free metrics against the 447 test digits (kernel
MMD and patch SWD), each the mean over ``--seeds`` sample sets, with their spread and
the real-vs-real reference (test digits against as many training digits). Needs the
diffusion row of ``digits_table.py`` (``runs/bench-digits/diffusion``), or any digits
diffusion run given with ``--run``.

Run by hand from the repository root (about 10 minutes on 2 cores)::

    .venv/bin/python benchmarks/diffusion_samplers.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine  # noqa: E402

from dgm.assembly import build_data  # noqa: E402
from dgm.loaded_run import LoadedRun  # noqa: E402
from dgm.metrics import kernel_mmd, patch_swd  # noqa: E402
from dgm.plugins import get_registry  # noqa: E402
from dgm.runs import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = [("ddpm", 1000), ("ddim", 10), ("ddim", 20), ("ddim", 50),
           ("dpm-solver++", 10), ("dpm-solver++", 20), ("dpm-solver++", 50)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-digits" / "diffusion")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--samplers", nargs="+", default=None, metavar="SAMPLER",
                        help="measure only these samplers (e.g. ddim dpm-solver++); the "
                        "other rows keep their earlier figures and dates")
    args = parser.parse_args()
    previous_file = RESULTS / "diffusion_samplers.json"
    previous = (json.loads(previous_file.read_text())["rows"] if previous_file.is_file()
                else [])
    loaded = LoadedRun.open(RunDir.open(args.run))
    family, recipe = loaded.family, loaded.recipe
    registry = get_registry()
    test = build_data(recipe, registry, "test")
    train = build_data(recipe, registry, "train")
    real = torch.stack([test[i]["x"] for i in range(len(test))])
    n = len(real)
    train_x = torch.stack([train[i]["x"] for i in range(n)])
    metrics = {"mmd": kernel_mmd(), "patch_swd": patch_swd()}
    reference = {k: float(m(real, train_x)) for k, m in metrics.items()}
    rows = []
    for sampler, steps in CONFIGS:
        if args.samplers and sampler not in args.samplers:
            kept = [r for r in previous if (r["sampler"], r["steps"]) == (sampler, steps)]
            rows += kept
            continue
        values: dict[str, list[float]] = {k: [] for k in metrics}
        seconds = []
        for seed in range(args.seeds):
            generator = torch.Generator().manual_seed(seed)
            start = time.perf_counter()
            chunks = [family.sample(min(args.batch, n - i), generator, sampler=sampler,
                                    steps=steps) for i in range(0, n, args.batch)]
            seconds.append(time.perf_counter() - start)
            samples = torch.cat(chunks).float()
            for k, m in metrics.items():
                values[k].append(float(m(samples, real)))
        row: dict[str, Any] = {"sampler": sampler, "steps": steps,
                               "seconds_per_sample": statistics.mean(seconds) / n,
                               "date": time.strftime("%Y-%m-%d")}
        before = [r for r in previous if (r["sampler"], r["steps"]) == (sampler, steps)]
        if before:  # what this row measured last time, to quote beside it
            row["previous"] = {k: before[0].get(k) for k in ("mmd", "patch_swd",
                                                             "seconds_per_sample", "date")}
        for k, v in values.items():
            row[k] = statistics.mean(v)
            row[f"{k}_spread"] = (max(v) - min(v)) / 2
        rows.append(row)
        print(f"{sampler:>13} {steps:5d} steps: {row['seconds_per_sample'] * 1e3:7.2f} "
              f"ms/sample  mmd {row['mmd']:.4f} ± {row['mmd_spread']:.4f}  patch-swd "
              f"{row['patch_swd']:.4f} ± {row['patch_swd_spread']:.4f}", flush=True)
    out = {"benchmark": "diffusion_samplers", "machine": machine(),
           "settings": {"run": str(args.run), "samples_per_set": n, "seeds": args.seeds,
                        "batch": args.batch, "reference_set": f"{n} test vs {n} train"},
           "real_vs_real": reference, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "diffusion_samplers.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    lines = ["# diffusion_samplers: one digits diffusion model, several samplers", "",
             f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs, {m['torch_threads']} "
             f"torch threads; diffusers {m['diffusers']}. {n} samples per set, mean over "
             f"{args.seeds} seeds (± half the range); metrics against the {n} test digits.",
             "", "| sampler | steps (network evaluations) | ms per sample | MMD | patch SWD "
             "| measured |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['seconds_per_sample'] * 1e3:.2f} "
                     f"| {r['mmd']:.4f} ± {r['mmd_spread']:.4f} | {r['patch_swd']:.4f} ± "
                     f"{r['patch_swd_spread']:.4f} | {r.get('date', '2026-11-23')} |")
    lines.append(f"| real vs real | - | - | {reference['mmd']:.4f} | "
                 f"{reference['patch_swd']:.4f} |")
    (RESULTS / "diffusion_samplers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
