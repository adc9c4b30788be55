"""Two processes (torchrun, gloo on CPU) train the same recipe as one process with the
same global batch: data sharded, one set of files written, the same final weights, the
same EMA weights; a loss that is not finite on one process stops (or skips) on all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from dgm.training import checkpoint_damage
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # trains, installs or starts processes: not in the fast tier

RECIPE = str(REPO / "recipes/image/digits-pixelcnn.toml")
SMALL = ["networks.autoregressive.hidden=8", "networks.autoregressive.layers=2",
         "networks.autoregressive.dropout=0.0", "train.steps=6", "train.progress=false",
         "train.checkpoint_every=3", "train.log_every=2", "sample.n=2",
         "train.ema=true", "train.ema_decay=0.5",
         "evaluate.max_examples=8", "evaluate.metrics=[]"]


def run(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_same_global_batch(in_tmp):
    two = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "-m", "dgm", "run", RECIPE, "run.dir=two",
               "data.batch_size=16", *SMALL], in_tmp)
    one = run([sys.executable, "-m", "dgm", "run", RECIPE, "run.dir=one",
               "data.batch_size=32", *SMALL], in_tmp)
    assert two.stdout.count("run folder:") == one.stdout.count("run folder:") == 1
    two_weights = load_file(in_tmp / "two" / "model" / "model.safetensors")
    one_weights = load_file(in_tmp / "one" / "model" / "model.safetensors")
    assert two_weights.keys() == one_weights.keys()
    for name, tensor in one_weights.items():
        torch.testing.assert_close(two_weights[name], tensor, atol=1e-5, rtol=1e-4)
    assert sorted(p.name for p in (in_tmp / "two" / "checkpoints").iterdir()) == [
        "step-00000003", "step-00000006"]
    for name in ("model.safetensors", "ema.safetensors"):  # raw weights and their EMA
        two_state = load_file(in_tmp / "two" / "checkpoints" / "step-00000006" / name)
        one_state = load_file(in_tmp / "one" / "checkpoints" / "step-00000006" / name)
        for key, tensor in one_state.items():
            torch.testing.assert_close(two_state[key], tensor, atol=1e-5, rtol=1e-4)
    raw = load_file(in_tmp / "two" / "checkpoints" / "step-00000006" / "model.safetensors")
    assert any(not torch.equal(raw[k], two_weights[k]) for k in raw)  # final = EMA
    assert (in_tmp / "two" / "evaluation.json").is_file()
    logged = {name: [json.loads(line)["loss"] for line in
                     (in_tmp / name / "metrics.jsonl").read_text().splitlines()]
              for name in ("one", "two")}  # the 2-process loss is gathered from both
    assert len(logged["two"]) == 3
    assert all(abs(a - b) < 1e-3 for a, b in zip(logged["one"], logged["two"]))


def test_each_process_draws_its_own_training_noise(in_tmp):
    """Processes share the seed, not the noise: identical draws on every rank would give
    a GAN duplicate fakes and a diffusion model repeated timesteps across the batch."""
    probe = str(REPO / "tests" / "cli" / "noise_probe_run.py")
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), probe, str(REPO / "recipes/image/digits-vae.toml"),
         "run.dir=noise", "data.batch_size=8", "train.steps=3", "train.progress=false",
         "sample.n=1", "evaluate.max_examples=2", "evaluate.metrics=[]"], in_tmp)
    draws = [json.loads((in_tmp / f"noise-{rank}.json").read_text()) for rank in (0, 1)]
    assert len(draws[0]) == len(draws[1]) == 3
    assert all(a != b for a, b in zip(*draws))


def test_a_two_process_run_resumed_from_a_checkpoint_ends_bit_for_bit_the_same(in_tmp):
    """Every process gets back its own RNG streams and data position: a VAE (whose loss
    draws noise on each rank) stopped at step 4 and resumed to 8 equals a run of 8."""
    def launch(folder: str, steps: int) -> subprocess.CompletedProcess:
        return run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(free_port()), "-m", "dgm", "run",
                    str(REPO / "recipes/image/digits-vae.toml"), f"run.dir={folder}",
                    f"train.steps={steps}", "train.checkpoint_every=4", "train.log_every=4",
                    "family.latent_dim=4", "data.batch_size=8", "train.progress=false",
                    "sample.n=1", "evaluate.max_examples=2", "evaluate.metrics=[]",
                    "evaluate.likelihood.k=1"], in_tmp)

    launch("whole", 8)
    launch("halves", 4)
    assert "resumed from step 4" in launch("halves", 8).stdout
    whole = load_file(in_tmp / "whole" / "model" / "model.safetensors")
    halves = load_file(in_tmp / "halves" / "model" / "model.safetensors")
    assert whole.keys() == halves.keys()
    assert all(torch.equal(whole[k], halves[k]) for k in whole)


def launch_with_a_nan_on_process_1(folder: str, on_nan: str, cwd) -> dict:
    """Two processes train 5 steps with a checkpoint every 2; process 1's loss is NaN on
    its third batch. Returns the exit code and each process's stderr; a run that is
    still going after two minutes (a rank left waiting) fails the test."""
    probe = str(REPO / "tests" / "cli" / "non_finite_probe_run.py")
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(free_port()), "--log-dir", "logs", "--tee", "2", probe,
            str(REPO / "recipes/image/digits-vae.toml"), f"run.dir={folder}",
            f"train.on_nan={on_nan}", "train.steps=5", "train.checkpoint_every=2",
            "train.log_every=1", "data.batch_size=8", "train.progress=false", "sample.n=1",
            "evaluate.max_examples=2", "evaluate.metrics=[]", "evaluate.likelihood.k=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
        output, _ = proc.communicate()
        pytest.fail(f"the two processes were still running after 120 s:\n{output}")
    stderr = {rank: next(cwd.glob(f"logs/*/attempt_0/{rank}/stderr.log")).read_text()
              for rank in (0, 1)}
    return {"code": proc.returncode, "output": output, "stderr": stderr}


def error_paragraphs(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("dgm: error:")]


def test_a_nan_on_one_process_stops_every_process_with_the_same_paragraph(in_tmp):
    """Every process decides together whether a batch's loss is finite: the one that saw
    NaN does not leave the others waiting in the gradient all-reduce."""
    ran = launch_with_a_nan_on_process_1("stop", "stop", in_tmp)
    assert ran["code"] != 0, ran["output"]
    said = [error_paragraphs(ran["stderr"][rank]) for rank in (0, 1)]
    assert len(said[0]) == 1 and said[0] == said[1], ran["output"]
    assert "loss became nan on process 1 of 2 at step 3" in said[0][0]
    assert "Last good checkpoint: stop/checkpoints/step-00000002" in said[0][0]
    checkpoints = in_tmp / "stop" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000002"]
    assert checkpoint_damage(checkpoints / "step-00000002") is None
    assert json.loads((checkpoints / "step-00000002" / "train_state.json").read_text())[
        "step"] == 2
    saved = load_file(checkpoints / "step-00000002" / "model.safetensors")
    assert torch.isfinite(saved["w"])


def test_a_nan_on_one_process_is_skipped_by_every_process(in_tmp):
    ran = launch_with_a_nan_on_process_1("skip", "skip", in_tmp)
    assert ran["code"] == 0, ran["output"]
    records = [json.loads(line) for line in
               (in_tmp / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in records if "skipped" in r] == [{"step": 3, "skipped": "non-finite loss"}]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    trained = [json.loads((in_tmp / f"calls-{rank}.json").read_text()) for rank in (0, 1)]
    assert trained[0]["calls"] == trained[1]["calls"] == 6  # 5 steps and the skipped batch
    assert trained[0]["w"] == trained[1]["w"]
    final = load_file(in_tmp / "skip" / "model" / "model.safetensors")
    assert final["w"].item() == trained[0]["w"]
