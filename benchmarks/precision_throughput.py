"""Benchmark: training throughput (samples per second) of two recipes at each mixed
precision the device supports: fp32 and bf16 on CPU; fp32, bf16 and fp16 (loss scaling)
on CUDA. Writes ``results/precision_throughput_<device>.{json,md}``, so a GPU machine
adds its own table beside this machine's.

Each run is a real ``dgm run`` of the recipe with a fixed step count; throughput is read
from ``metrics.jsonl`` between the first and the last logged step, so start-up,
sampling and evaluation are excluded. Precisions alternate over ``--rounds`` and the
medians are reported, with each precision's ratio to fp32 taken within a round.

Run by hand from the repository root::

    .venv/bin/python benchmarks/precision_throughput.py            # about 10 min on 2 CPUs
    .venv/bin/python benchmarks/precision_throughput.py --steps 400  # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = {
    "digits-diffusion": ("recipes/image/digits-diffusion.toml", []),
    "brick-diffusion": ("recipes/texture/brick-diffusion.toml", []),
}


def cpu_model_and_bf16_flags() -> tuple[str, list[str]]:
    """The CPU's model name and bf16 instruction-set flags (avx512_bf16, amx_bf16):
    bf16 autocast on CPU is only faster where they exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU", []
    names = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line.startswith("model name")]
    flags = {f for f in text.split() if f in ("avx512_bf16", "amx_bf16", "avx_ne_convert")}
    return (names[0] if names else "unknown CPU"), sorted(flags)


def recipe_batch(path: str) -> int:
    from dgm.recipes import read_recipe

    return int(read_recipe(ROOT / path).tables["data"]["batch_size"])


def samples_per_second(run: Path, batch: int) -> float:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss" in r]
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) * batch / (last["time"] - first["time"])


def train(recipe: str, precision: str, steps: int, folder: Path) -> float:
    path, extra = RECIPES[recipe]
    overrides = [f"run.dir={folder}", f"train.steps={steps}", "train.progress=false",
                 f"train.log_every={max(steps // 10, 1)}", f"train.checkpoint_every={steps}",
                 f"train.mixed_precision={precision}", "sample.n=1", 'sample.size=""',
                 "evaluate.max_examples=2", "evaluate.metrics=[]",
                 "evaluate.likelihood.timesteps=2", *extra]
    proc = subprocess.run([sys.executable, "-m", "dgm", "run", path, *overrides], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{recipe} at {precision}:\n{proc.stdout}\n{proc.stderr}")
    return samples_per_second(folder, recipe_batch(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    precisions = ["no", "bf16", "fp16"] if cuda else ["no", "bf16"]
    if cuda and not torch.cuda.is_bf16_supported():
        warnings.warn("this GPU has no bf16: measuring fp32 and fp16 only", stacklevel=1)
        precisions.remove("bf16")
    rates: dict[str, dict[str, list[float]]] = {
        r: {p: [] for p in precisions} for r in args.recipes}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            for rnd in range(args.rounds):
                order = precisions if rnd % 2 == 0 else precisions[::-1]
                for precision in order:
                    rate = train(recipe, precision, args.steps,
                                 Path(tmp) / f"{recipe}-{precision}-{rnd}")
                    rates[recipe][precision].append(rate)
                    print(f"{recipe} round {rnd} {precision}: {rate:.1f} samples/s",
                          flush=True)
    summary: dict[str, Any] = {}
    for recipe, by_precision in rates.items():
        summary[recipe] = {
            p: {"median": statistics.median(v),
                "ratio_to_fp32": statistics.median(
                    x / y for x, y in zip(v, by_precision["no"], strict=True))}
            for p, v in by_precision.items()}
    gpu = torch.cuda.get_device_name(0) if cuda else None
    cpu_model, flags = cpu_model_and_bf16_flags()
    out = {"benchmark": f"precision_throughput_{device}",
           "machine": {**machine(), "gpu": gpu, "cpu_model": cpu_model,
                       "cpu_bf16_flags": flags},
           "settings": {"steps": args.steps, "rounds": args.rounds, "device": device,
                        "batch": {r: recipe_batch(RECIPES[r][0]) for r in args.recipes}},
           "samples_per_second": rates, "summary": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"precision_throughput_{device}"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    where = gpu or (f"{m['cpu_count']} CPUs ({cpu_model}, bf16 flags: "
                    f"{', '.join(m['cpu_bf16_flags']) or 'none'}), "
                    f"{m['torch_threads']} torch threads")
    names = {"no": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + loss scaling"}
    lines = [f"# {name}: training samples/s by mixed precision", "",
             f"{m['date']}; {where}; {m['platform']}; torch {m['torch']}, accelerate "
             f"{m['accelerate']}. {args.steps} steps per run, {args.rounds} rounds with the "
             "precisions alternating; medians.", "",
             "| recipe | batch | precision | samples/s | ratio to fp32 (same round) |",
             "|---|---:|---|---:|---:|"]
    for recipe, by_precision in summary.items():
        for p, figures in by_precision.items():
            lines.append(f"| {recipe} | {out['settings']['batch'][recipe]} | {names[p]} | "
                         f"{figures['median']:.1f} | {figures['ratio_to_fp32']:.2f} |")
    lines.append("")
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
