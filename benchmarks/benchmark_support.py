"""What every benchmark shares: where it ran (written into every results file) and a
timed ``dgm run`` of one recipe into a run folder."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """Platform, CPU count, library versions, torch threads and the UTC date."""
    import accelerate
    import diffusers

    return {"platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "accelerate": accelerate.__version__,
            "diffusers": diffusers.__version__, "torch_threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def timed_dgm_run(recipe: str, run: Path, overrides: list[str], reuse: bool = False,
                  cwd: Path | None = None, python: str = sys.executable) -> dict[str, Any]:
    """Train, sample and evaluate ``recipe`` into a fresh ``run`` folder with ``dgm run``;
    return (and keep beside the run) its steps, training and whole-run seconds. With
    ``reuse``, the timings of an earlier run in that folder are returned instead.
    ``python`` is the interpreter of the environment to run it in (default this one's)."""
    timings_file = run / "benchmark_timings.json"
    if reuse and timings_file.is_file():
        return json.loads(timings_file.read_text())
    if run.exists():
        shutil.rmtree(run)
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", "dgm", "run", recipe, f"run.dir={run}",
                           "train.progress=false", *overrides], cwd=cwd, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{recipe}: dgm run failed:\n{proc.stdout}\n{proc.stderr}")
    trained = re.search(r"trained to step (\d+) in ([\d.]+) s", proc.stdout)
    timings = {"steps": int(trained.group(1)), "train_seconds": float(trained.group(2)),
               "run_seconds": wall, "torch_threads": torch.get_num_threads(),
               "stdout": proc.stdout}
    timings_file.write_text(json.dumps(timings, indent=2))
    return timings
