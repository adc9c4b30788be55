"""Benchmark: training from a large folder of images, streamed (issue #14).

For a generated folder of PNGs at each size (default: 50,000 at 64x64 and 10,000 at
256x256, RGB, smooth random colour fields that compress like photographs do not, so
decoding is what is measured):

- ``dgm run`` of the digits-diffusion UNet (recipes/image/digits-diffusion.toml's
  denoiser, without its self-attention, which at 32x32 tokens and more would need tens
  of GB: dgm refuses it) on the folder, streamed with 2 workers, batches of 32 at 64x64
  (fewer at larger sizes, for the same activation memory), for a few steps: the time
  from the command's start to its first logged step, its peak RSS, and the training
  step's images per second;
- the data loader alone (``image:folder`` with ``stream = true``, batches of 64): images
  per second with 0, 1 and 2 worker processes.

Targets: the loader not the bottleneck at 2 workers (loader images/s above the training
step's), peak RSS under 2 GB, first step within 30 s.

Run by hand from the repository root, with nothing else running (about 15 minutes on 2
cores; the folders are made once under runs/bench-data-scale/ and reused)::

    .venv/bin/python benchmarks/data_scale.py
    .venv/bin/python benchmarks/data_scale.py --sizes 64:2000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RUNS = ROOT / "runs" / "bench-data-scale"
BATCH = 64
LOADER_BATCHES = 20


def train_batch(side: int) -> int:
    """32 at 64x64, fewer at larger sizes, so the UNet's activations stay near 3 GB."""
    return max(2, 32 * 64 * 64 // (side * side))


def make_folder(side: int, count: int) -> Path:
    """``count`` RGB PNGs of ``side`` x ``side`` under RUNS (made once, then reused)."""
    folder = RUNS / f"images-{side}-{count}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, side, dtype=np.float32)
    u, v = np.meshgrid(grid, grid)
    for i in range(count):
        a, b, c = rng.uniform(0, 255, (3, 3))
        image = np.stack([a[k] * u + b[k] * v + c[k] * u * v for k in range(3)], axis=-1)
        noise = rng.normal(0, 6, image.shape)
        Image.fromarray(np.clip(image / 2 + noise, 0, 255).astype(np.uint8)).save(
            folder / f"{i:06d}.png", compress_level=1)
    done.touch()
    return folder


def recipe_for(folder: Path, side: int) -> Path:
    text = (ROOT / "recipes/image/digits-diffusion.toml").read_text()
    text = text.replace('name = "image:digits"',
                        f'name = "image:folder"\npath = {json.dumps(str(folder))}\n'
                        'stream = true\nnum_workers = 2')
    path = RUNS / f"folder-diffusion-{side}.toml"
    path.write_text(text)
    return path


def timed_run(recipe: Path, run: Path, steps: int, batch: int) -> dict[str, Any]:
    """``dgm run`` in a child: seconds to the first logged step, peak RSS, step rate."""
    probe = ("import resource, subprocess, sys, time\n"
             "start = time.time()\n"
             "code = subprocess.run(sys.argv[1:]).returncode\n"
             "print(start, code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    args = [sys.executable, "-m", "dgm", "run", str(recipe), f"run.dir={run}",
            f"train.steps={steps}", "train.log_every=1", "train.progress=false",
            f"data.batch_size={batch}", "train.ema=false", "sample.n=4",
            "networks.denoiser.attention=[false, false]",
            "networks.denoiser.mid_attention=false",
            "family.sampling_steps=2", "evaluate.max_examples=64",
            "evaluate.likelihood.timesteps=2", "evaluate.metrics=[]",
            f"evaluate.batch_size={batch}"]
    if run.exists():
        import shutil

        shutil.rmtree(run)
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                          text=True, cwd=ROOT)
    start, code, rss_kb = done.stdout.strip().splitlines()[-1].split()
    if int(code) != 0:
        raise SystemExit(f"dgm run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_sec"] for r in records[1:]]  # the first step includes warm-up
    return {"steps": steps, "train_batch": batch,
            "seconds_to_first_step": records[0]["time"] - float(start),
            "peak_rss_mb": int(rss_kb) / 1024,
            "train_images_per_s": float(np.median(rates)) if rates else None}


def loader_rate(folder: Path, workers: int) -> float:
    """Images per second the streamed folder's loader delivers with ``workers``."""
    from dgm_image.datasets import folder as image_folder

    data = image_folder("train", str(folder), stream=True)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    drawn, start = -1, 0.0
    while drawn < LOADER_BATCHES:  # epochs after the first if the folder is small
        for _ in loader:
            drawn += 1
            if drawn == 0:  # the first batch waits for the workers to start
                start = time.perf_counter()
            if drawn == LOADER_BATCHES:
                break
    return LOADER_BATCHES * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["64:50000", "256:10000"],
                        metavar="SIDE:COUNT")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    rows = []
    for item in args.sizes:
        side, count = (int(v) for v in item.split(":"))
        print(f"{count} images at {side}x{side}: making the folder ...", flush=True)
        made = time.perf_counter()
        folder = make_folder(side, count)
        row: dict[str, Any] = {"side": side, "images": count,
                               "folder_mb": sum(p.stat().st_size for p in folder.iterdir())
                               / 2**20, "made_seconds": time.perf_counter() - made}
        print("  the data loader ...", flush=True)
        row["loader_images_per_s"] = {w: loader_rate(folder, w) for w in (0, 1, 2)}
        print("  dgm run ...", flush=True)
        row.update(timed_run(recipe_for(folder, side), RUNS / f"run-{side}", args.steps,
                             train_batch(side)))
        train_rate = row["train_images_per_s"] or 0.0
        row["loader_not_the_bottleneck_at_2_workers"] = row["loader_images_per_s"][2] \
            > train_rate
        row["date"] = machine()["date"]
        rows.append(row)
        print(json.dumps(row, indent=2), flush=True)
    results = RESULTS / "data_scale.json"
    if results.is_file():  # rows of other sizes measured before are kept
        measured = {(r["side"], r["images"]) for r in rows}
        rows = [r for r in json.loads(results.read_text())["rows"]
                if (r["side"], r["images"]) not in measured] + rows
    out = {"benchmark": "data_scale", "machine": machine(), "batch": BATCH,
           "loader_batches": LOADER_BATCHES, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_scale.json").write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out)
    print((RESULTS / "data_scale.md").read_text())


def write_markdown(out: dict[str, Any]) -> None:
    m = out["machine"]
    lines = ["# data_scale: training from a large folder of images, streamed", "",
             f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs; torch {m['torch']}. "
             f"Batches of {out['batch']}; the loader measured over {out['loader_batches']} "
             "batches after the first.", "",
             "| images | size | folder (MB) | loader img/s, 0 / 1 / 2 workers | training "
             "img/s (2 workers; batch) | loader not the bottleneck | first step (s) | peak RSS "
             "(MB) |", "|---:|---|---:|---|---:|---|---:|---:|"]
    for r in out["rows"]:
        rates = " / ".join(f"{r['loader_images_per_s'][w]:.0f}"
                           for w in sorted(r["loader_images_per_s"]))
        lines.append(f"| {r['images']:,} | {r['side']}x{r['side']} | {r['folder_mb']:.0f} | "
                     f"{rates} | {r['train_images_per_s']:.1f} ({r['train_batch']}) | "
                     f"{'yes' if r['loader_not_the_bottleneck_at_2_workers'] else 'NO'} | "
                     f"{r['seconds_to_first_step']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "Targets: the loader not the bottleneck at 2 workers, peak RSS under "
              "2 GB, first step within 30 s (from the command's start: imports, the "
              "header scan of every file, building the UNet). The model is the "
              "digits-diffusion UNet (channels [64, 128], no attention) at the folder's size, RGB.",
              "", "Peak RSS is the whole `dgm run` process's: the UNet's activations and "
              "the evaluation dominate it, not the folder (held in memory, the 64x64 "
              "training split alone would be 40,000 x 3 x 64 x 64 float32 = 1.8 GiB). Each "
              "row's date is in the json."]
    (RESULTS / "data_scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
