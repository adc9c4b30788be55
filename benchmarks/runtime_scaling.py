"""Benchmark: multi-process speed-up and the cost of a checkpoint.

* Speed-up: the digits diffusion recipe (a 2.8M-parameter diffusers UNet) trained with
  the same global batch by 1 process (2 torch threads) and by 2 processes under torchrun
  (gloo, 1 thread each, half the batch each). Throughput is read from each run's
  ``metrics.jsonl`` between the first and the last logged step, so start-up is excluded.
  The two set-ups alternate (ABAB...) over ``--rounds``; medians are reported.
* Checkpoint overhead: ``Trainer.save_checkpoint`` (accelerate ``save_state`` of weights,
  AdamW state and RNG streams, plus the step counter, written atomically) for the same
  model, timed ``--saves`` times; the size on disk is reported with it.

Run by hand from the repository root (about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/runtime_scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = ROOT / "recipes" / "image" / "digits-diffusion.toml"


def throughput(run: Path) -> float:
    """Samples per second between the first and last logged steps."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss" in r]
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) * GLOBAL_BATCH / (last["time"] - first["time"])


GLOBAL_BATCH = 64


def train(processes: int, steps: int, folder: Path) -> float:
    overrides = [f"run.dir={folder}", f"train.steps={steps}", "train.progress=false",
                 "train.log_every=10", f"train.checkpoint_every={steps}", "train.ema=false",
                 f"data.batch_size={GLOBAL_BATCH // processes}", "sample.n=1",
                 "evaluate.max_examples=2", "evaluate.metrics=[]",
                 "evaluate.likelihood.timesteps=2"]
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // processes)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                 str(processes), "--master_port", "29531"] if processes > 1
                else [sys.executable])
    proc = subprocess.run([*launcher, "-m", "dgm", "run", str(RECIPE), *overrides],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return throughput(folder)


def checkpoint_cost(saves: int, folder: Path) -> dict[str, Any]:
    import torch

    from dgm.assembly import build_data, build_family
    from dgm.plugins import get_registry
    from dgm.recipes import read_recipe
    from dgm.runs import RunDir
    from dgm.training import Trainer

    torch.set_num_threads(2)
    recipe = read_recipe(RECIPE, ["train.progress=false", "train.ema=false"])
    data = build_data(recipe, get_registry(), "train")
    family = build_family(recipe, get_registry(), data.info)
    run = RunDir(folder)
    trainer = Trainer(family, data, run, recipe.train, recipe.data_loading)
    batch = {"x": data.x[:GLOBAL_BATCH]}
    loss, _ = trainer.model(batch)  # one step, so AdamW has its moment buffers
    trainer.accelerator.backward(loss)
    trainer.optimizer.step()
    seconds = []
    for i in range(saves):
        trainer.state.step = i + 1
        start = time.perf_counter()
        trainer.save_checkpoint()
        seconds.append(time.perf_counter() - start)
    latest = run.latest_checkpoint()
    size = sum(p.stat().st_size for p in latest.iterdir())
    return {"parameters": sum(p.numel() for p in family.parameters()),
            "checkpoint_mb": size / 2**20, "seconds_median": statistics.median(seconds),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--saves", type=int, default=5)
    args = parser.parse_args()
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for processes in order:
                rate = train(processes, args.steps, Path(tmp) / f"p{processes}-r{r}")
                rates[processes].append(rate)
                print(f"round {r}: {processes} process(es): {rate:.1f} samples/s", flush=True)
        cost = checkpoint_cost(args.saves, Path(tmp) / "ckpt")
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    out = {"benchmark": "runtime_scaling", "machine": machine(),
           "settings": {"recipe": str(RECIPE.relative_to(ROOT)), "global_batch": GLOBAL_BATCH,
                        "steps": args.steps, "rounds": args.rounds, "saves": args.saves,
                        "threads": "1 process x 2 threads vs 2 processes x 1 thread"},
           "samples_per_second": {"1_process": rates[1], "2_processes": rates[2]},
           "speedup": two / one, "checkpoint": cost}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runtime_scaling.json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    lines = ["# runtime_scaling: 2 processes vs 1, and the cost of a checkpoint", "",
             f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs; torch {m['torch']}, "
             f"accelerate {m['accelerate']}. Digits diffusion recipe (UNet2DModel, "
             f"{cost['parameters']:,} parameters), global batch {GLOBAL_BATCH}, "
             f"{args.steps} steps per run, {args.rounds} rounds alternating.", "",
             "| set-up | samples/s (median) | runs |", "|---|---:|---|",
             f"| 1 process, 2 threads, batch 64 | {one:.1f} | "
             f"{', '.join(f'{x:.1f}' for x in rates[1])} |",
             f"| 2 processes (torchrun, gloo), 1 thread each, batch 32 each | {two:.1f} | "
             f"{', '.join(f'{x:.1f}' for x in rates[2])} |", "",
             f"Speed-up of 2 processes over 1: **{two / one:.2f}x**.", "",
             f"Checkpoint (weights, AdamW state, RNG, step; atomic rename): "
             f"**{cost['seconds_median']:.3f} s** median over {args.saves} saves, "
             f"{cost['checkpoint_mb']:.1f} MB on disk.", ""]
    (RESULTS / "runtime_scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
