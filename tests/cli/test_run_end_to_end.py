"""`dgm run`, `dgm sample`, `dgm evaluate` on the digits VAE; kill and resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dgm.cli import main
from tests.conftest import REPO, dgm_cli

RECIPE = str(REPO / "recipes" / "image" / "digits-vae.toml")


def test_run_sample_evaluate_make_a_complete_run_folder(in_tmp, capsys):
    code = main(["run", RECIPE, "run.dir=out", "train.steps=60", "train.log_every=20",
                 "train.checkpoint_every=25", "train.progress=false", "sample.n=10",
                 "evaluate.likelihood.k=20", "evaluate.max_examples=40",
                 "evaluate.metric_samples=16"])
    printed = capsys.readouterr().out
    assert code == 0
    run = in_tmp / "out"
    for name in ("recipe.toml", "model/model.safetensors", "model/data_info.json",
                 "metrics.jsonl", "samples/grid.png", "evaluation.json", "loss.png",
                 "summary.md"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000050", "step-00000060"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [20, 40, 60]
    assert records[-1]["loss"] < records[0]["loss"]
    report = json.loads((run / "evaluation.json").read_text())
    assert report["kind"] == "bound" and report["method"] == "IWAE, k=20"
    assert report["examples"] == 40 and 0 < report["nll_nats"] < report["uniform_nll_nats"]
    assert abs(report["bits_per_dim"] - report["nll_nats"] / (64 * 0.6931471805599453)) < 1e-9
    assert "NLL (nats/example)" in printed and "bits/dim" in printed
    assert set(report["metrics"]) == {"core:mmd", "core:patch-swd", "core:copy-rate"}
    with Image.open(run / "samples" / "grid.png") as grid:
        assert grid.mode == "L" and grid.width >= 4 * 32
    assert len(list((run / "samples").glob("sample-*.png"))) == 10

    assert main(["sample", str(run), "--n", "5", "--out", "more", "--seed", "7"]) == 0
    assert len(list((in_tmp / "more").glob("sample-*.png"))) == 5
    first = (in_tmp / "more" / "sample-0000.png").read_bytes()
    assert main(["sample", str(run), "--n", "5", "--out", "again", "--seed", "7"]) == 0
    assert (in_tmp / "again" / "sample-0000.png").read_bytes() == first

    assert main(["evaluate", str(run)]) == 0
    assert "IWAE, k=20" in capsys.readouterr().out


def test_rerunning_a_finished_run_with_a_different_recipe_is_refused(in_tmp, capsys):
    args = ["run", RECIPE, "run.dir=out", "train.steps=4", "train.progress=false",
            "sample.n=2", "evaluate.likelihood.k=2", "evaluate.max_examples=4",
            "evaluate.metric_samples=4"]
    assert main(args) == 0
    before = (in_tmp / "out" / "model" / "model.safetensors").read_bytes()
    assert main([*args, "family.latent_dim=3"]) == 2
    err = capsys.readouterr().err
    assert "holds a run of a different recipe (differs in: family.latent_dim)" in err
    assert (in_tmp / "out" / "model" / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes_and_finishes(tmp_path):
    steps = 1200
    args = [sys.executable, "-m", "dgm", "run", RECIPE, "run.dir=killed",
            f"train.steps={steps}", "train.checkpoint_every=100", "train.log_every=100",
            "train.progress=false", "sample.n=4", "evaluate.likelihood.k=4",
            "evaluate.max_examples=16", "evaluate.metric_samples=8"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = sorted(ckpts.glob("step-*")) if ckpts.is_dir() else []
        if done and int(done[-1].name.split("-")[1]) >= 300:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in ckpts.glob("step-*"))
    assert killed_at < steps

    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resumed from step" in result.stdout
    resumed = int(result.stdout.split("resumed from step ")[1].split()[0])
    assert resumed >= killed_at - 100 and resumed >= 300
    assert f"trained to step {steps}" in result.stdout
    records = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r["step"] for r in records] == list(range(100, steps + 1, 100))

    # The same run, uninterrupted, ends with the same weights: data order, RNG streams
    # and optimizer state all came back.
    whole = dgm_cli(*[a.replace("=killed", "=whole") for a in args[3:]], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    a = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    b = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _written_since(folder, pattern: str, since_ns: int) -> bool:
    """Whether `folder` holds an entry matching `pattern` made after `since_ns`."""
    for path in folder.glob(pattern):
        try:
            if path.stat().st_mtime_ns >= since_ns:
                return True
        except FileNotFoundError:
            continue  # renamed or removed between glob and stat
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_including_inside_a_checkpoint_write(tmp_path):
    """Kills at random moments after a checkpoint, and kills the instant a checkpoint
    folder is being written: each leaves at worst a hidden partial folder, the same
    command resumes from the last complete checkpoint, and the weights at the end equal
    an uninterrupted run's bit for bit."""
    steps = 150
    args = [sys.executable, "-m", "dgm", "run", RECIPE, "run.dir=killed",
            f"train.steps={steps}", "train.checkpoint_every=1", "train.keep_checkpoints=2",
            "train.log_every=10", "train.progress=false", "sample.n=2",
            "evaluate.likelihood.k=2", "evaluate.max_examples=4", "evaluate.metrics=[]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    ckpts = tmp_path / "killed" / "checkpoints"
    rng = random.Random(0)
    kills, mid_save = 0, 0
    for attempt in range(16):
        if kills >= 4 and mid_save:
            break
        inside_write = attempt % 2 == 1
        launched = time.time_ns()
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # A resumed process first removes the partial folder its predecessor left, so
        # only folders made after this launch count.
        pattern = ".partial-*" if inside_write else "step-*"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (
                ckpts.is_dir() and _written_since(ckpts, pattern, launched)):
            time.sleep(0 if inside_write else 0.01)
        if not inside_write:
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        mid_save += any(ckpts.glob(".partial-*"))
    assert kills and mid_save, f"no kill landed inside a checkpoint write in {kills} kills"
    finished = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "resumed from step" in finished.stdout and f"trained to step {steps}" in \
        finished.stdout
    assert not any(ckpts.glob(".partial-*"))
    whole = subprocess.run([a.replace("=killed", "=whole") for a in args], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    a = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    b = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_running_a_finished_run_again_says_there_is_nothing_left_to_train(in_tmp, capsys):
    args = ["run", RECIPE, "run.dir=done", "train.steps=4", "train.log_every=2",
            "train.progress=false", "sample.n=2", "evaluate.likelihood.k=2",
            "evaluate.max_examples=8", "evaluate.metric_samples=8"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    again = capsys.readouterr().out
    logged = json.loads((in_tmp / "done" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"already trained to step 4 (last logged loss {logged['loss']:.3f}): nothing " \
           "left to train" in again
    assert "nan" not in again and "trained to step 4 in" in first
