"""The CUDA path: fp16 with loss scaling, and seeded sampling on the GPU. Skipped where
torch sees no CUDA device (CI); run on a GPU machine with ``pytest tests/cli/test_cuda.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, dgm_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

RECIPE = str(REPO / "recipes" / "image" / "digits-diffusion.toml")
SHORT = ["train.progress=false", "train.log_every=10", "sample.n=4",
         "evaluate.max_examples=8", "evaluate.metrics=[]", "evaluate.likelihood.timesteps=2"]


def test_fp16_with_loss_scaling_trains_checkpoints_and_resumes_on_cuda(tmp_path):
    args = ["run", RECIPE, "run.dir=fp16", "train.mixed_precision=fp16",
            "train.checkpoint_every=20", *SHORT]
    first = dgm_cli(*args, "train.steps=40", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "needs a GPU" not in first.stderr
    checkpoint = tmp_path / "fp16" / "checkpoints" / "step-00000040"
    assert (checkpoint / "scaler.pt").is_file()  # the loss scale is part of the state
    resumed = dgm_cli(*args, "train.steps=60", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 40" in resumed.stdout
    records = [json.loads(x) for x in (tmp_path / "fp16" / "metrics.jsonl").read_text()
               .splitlines() if "loss" in x]
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_a_seed_gives_the_same_samples_on_cuda_as_on_cpu(tmp_path):
    trained = dgm_cli("run", RECIPE, "run.dir=run", "train.steps=30", *SHORT, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    grids = {}
    for name, env in (("gpu", {}), ("cpu", {"CUDA_VISIBLE_DEVICES": ""})):
        drawn = dgm_cli("sample", "run", "--n", "4", "--seed", "7", "--out", name,
                        cwd=tmp_path, env=env)
        assert drawn.returncode == 0, drawn.stderr
        with Image.open(tmp_path / name / "sample-0000.png") as image:
            grids[name] = np.asarray(image, dtype=np.float64)
    assert np.abs(grids["gpu"] - grids["cpu"]).mean() < 4.0  # grey levels of 255
