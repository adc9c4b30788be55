"""One writer per run folder (#13, finding 1): a second `dgm run`, `dgm sample` or
`dgm evaluate` on a folder in use is refused naming the holder, and a holder killed
with SIGKILL leaves no lock behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from dgm.cli import main
from tests.cli.test_errors import RECIPE, TINY, error_of

HOLD = """
import sys, time
from pathlib import Path
from dgm.run_lock import run_folder_lock
with run_folder_lock(Path(sys.argv[1]), "a test holder"):
    print("held", flush=True)
    time.sleep(120)
"""


def hold(folder) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_folder_in_use_is_refused_naming_the_holder_and_a_killed_holder_frees_it(
        capsys, in_tmp):
    assert main(["run", RECIPE, "run.dir=run", *TINY]) == 0
    before = (in_tmp / "run" / "metrics.jsonl").read_text()
    holder = hold(in_tmp / "run")
    try:
        for argv in (["run", RECIPE, "run.dir=run", *TINY, "train.steps=4"],
                     ["sample", "run", "--n", "2"], ["evaluate", "run"]):
            err = error_of(capsys, *argv)
            assert f"is in use by process {holder.pid} (a test holder, since " in err
            assert "nothing was changed" in err
        assert (in_tmp / "run" / "metrics.jsonl").read_text() == before
        assert main(["sample", "run", "--n", "2", "--out", "elsewhere"]) == 0  # reads only
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["run", RECIPE, "run.dir=run", *TINY, "train.steps=4"]) == 0
    assert json.loads((in_tmp / "run" / "metrics.jsonl").read_text().splitlines()[-1])[
        "step"] == 4


@pytest.mark.slow
def test_two_runs_of_one_recipe_on_one_folder_do_not_both_train(in_tmp):
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "dgm", "run", RECIPE, "run.dir=run", *TINY,
            "train.steps=1000000", "train.log_every=100", "train.checkpoint_every=100"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env, cwd=in_tmp)
    try:
        assert first.stdout.readline().startswith("run folder: run")  # it holds the folder
        second = subprocess.run(args, capture_output=True, text=True, env=env, cwd=in_tmp,
                                timeout=300)
        assert first.poll() is None  # still training
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    assert f"is in use by process {first.pid} (dgm run " in second.stderr
    assert "resumed" not in second.stdout
    steps = [json.loads(line)["step"] for line in
             (in_tmp / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps == sorted(set(steps))  # one writer: each step logged once, in order
