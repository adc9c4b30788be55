"""Training options: the optimizer, learning-rate schedules with warm-up (diffusers'
get_scheduler) and accelerate's experiment trackers, checkpointed and resumed like the
rest of the training state."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from dgm.cli import main
from tests.conftest import REPO

RECIPE = str(REPO / "recipes" / "image" / "digits-vae.toml")
TINY = ["train.progress=false", "sample.n=2", "evaluate.likelihood.k=2",
        "evaluate.max_examples=4", "evaluate.metric_samples=4", "evaluate.metrics=[]",
        "train.log_every=1"]
COSINE = ["train.lr_schedule=cosine", "train.warmup_steps=4", "train.lr_schedule_steps=12",
          "train.lr=0.002"]


def logged(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def cosine_with_warmup(step: int, lr: float = 0.002, warmup: int = 4, span: int = 12) -> float:
    """The learning rate after ``step`` optimizer steps, written out from the definition
    (linear warm-up from 0, then half a cosine down to 0)."""
    if step < warmup:
        return lr * step / warmup
    progress = (step - warmup) / (span - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def test_a_warmed_up_cosine_schedule_sets_each_steps_learning_rate(in_tmp):
    assert main(["run", RECIPE, "run.dir=cos", "train.steps=12", *COSINE, *TINY]) == 0
    records = [r for r in logged(in_tmp / "cos") if "lr" in r]
    assert [r["step"] for r in records] == list(range(1, 13))
    for record in records:  # logged after the step: the rate the next step will use
        assert record["lr"] == pytest.approx(cosine_with_warmup(record["step"]), abs=1e-9)
    assert records[3]["lr"] == pytest.approx(0.002) and records[-1]["lr"] < 1e-9


def test_a_resumed_run_continues_the_schedule_and_ends_bit_identical(in_tmp):
    args = ["run", RECIPE, *COSINE, "train.optimizer=adam", "train.betas=[0.8, 0.99]",
            "train.checkpoint_every=6", "train.keep_checkpoints=5", *TINY]
    assert main([*args, "run.dir=whole", "train.steps=12"]) == 0
    assert main([*args, "run.dir=cut", "train.steps=6"]) == 0
    saved = json.loads((in_tmp / "cut/checkpoints/step-00000006/train_state.json").read_text())
    assert saved["lr_schedule"]["last_epoch"] == 6
    assert main([*args, "run.dir=cut", "train.steps=12"]) == 0
    whole = load_file(in_tmp / "whole/model/model.safetensors")
    cut = load_file(in_tmp / "cut/model/model.safetensors")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert ([r["lr"] for r in logged(in_tmp / "cut")]
            == [r["lr"] for r in logged(in_tmp / "whole")])


def test_sgd_with_momentum_trains(in_tmp):
    assert main(["run", RECIPE, "run.dir=sgd", "train.steps=30", "train.optimizer=sgd",
                 "train.momentum=0.9", "train.lr=0.0005", *TINY]) == 0
    losses = [r["loss"] for r in logged(in_tmp / "sgd")]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


@pytest.mark.skipif(not tensorboard_installed(), reason="the tensorboard extra is not here")
def test_tensorboard_event_files_hold_the_logged_losses_once_after_a_resume(in_tmp):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    args = ["run", RECIPE, "run.dir=tb", "train.log_with=[\"tensorboard\"]",
            "train.checkpoint_every=4", "train.keep_checkpoints=5", *TINY]
    assert main([*args, "train.steps=6"]) == 0
    # as if killed after logging steps 5 and 6 but before their checkpoint was written
    shutil.rmtree(in_tmp / "tb" / "checkpoints" / "step-00000006")
    assert main([*args, "train.steps=8"]) == 0
    logs = in_tmp / "tb" / "logs"
    assert len(list(logs.rglob("events.out.tfevents.*"))) >= 2
    runs = EventMultiplexer().AddRunsFromDirectory(str(logs)).Reload()
    events = [e for run in runs.Runs() if "loss" in runs.GetAccumulator(run).Tags()["scalars"]
              for e in runs.Scalars(run, "loss")]
    expected = {r["step"]: r["loss"] for r in logged(in_tmp / "tb")}
    assert [e.step for e in events] == list(range(1, 9))  # 5 and 6 once: the re-run's
    assert all(e.value == pytest.approx(expected[e.step], rel=1e-6) for e in events)


@pytest.mark.parametrize(("override", "message"), [
    ("train.log_with=[\"notebook\"]", "'notebook' is not a tracker accelerate knows"),
    ("train.betas=[0.9]", "train.betas must be two numbers"),
    ("train.warmup_steps=5", "has no effect with train.lr_schedule = 'constant'"),
    ("train.lr_schedule=linear", "train.warmup_steps = 50 leaves no steps"),
])
def test_bad_training_options_are_refused_before_anything_is_written(
        in_tmp, capsys, override, message):
    extra = ["train.warmup_steps=50", "train.steps=20"] if "linear" in override else []
    assert main(["run", RECIPE, "run.dir=bad", override, *extra, *TINY]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("dgm: error:") == 1
    assert not (in_tmp / "bad").exists()


@pytest.mark.skipif(tensorboard_installed(), reason="tensorboard is installed here")
def test_a_tracker_whose_package_is_missing_says_what_to_install(in_tmp, capsys):
    assert main(["run", RECIPE, "run.dir=tb", "train.log_with=[\"tensorboard\"]",
                 *TINY]) != 0
    assert ('the tensorboard tracker needs its package, which is not installed here: pip '
            'install "dgm-core[tensorboard]"') in capsys.readouterr().err
    assert not (in_tmp / "tb").exists()
