"""Training options: the optimizer, learning-rate schedules with warm-up (diffusers'
get_scheduler) and accelerate's experiment trackers, checkpointed and resumed like the
rest of the training state."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import shutil

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from dgm.cli import main
from dgm.denoisers import UNet2DDenoiser
from dgm.training import enable_gradient_checkpointing
from dgm.workflows import prepare
from tests.conftest import REPO, dgm_cli

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
    ("train.gradient_checkpointing=true", "none of this family's networks (MLPDecoder, "
     "MLPEncoder, StandardNormal) can"),
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


def saved_bytes(module: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> tuple[int, dict]:
    """Bytes autograd keeps for the backward pass of ``module(x, t)``, and the gradients."""
    kept = []

    def pack(tensor):
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    module.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = module(x, t).pow(2).mean()
    loss.backward()
    return sum(kept), {n: p.grad.clone() for n, p in module.named_parameters()}


def test_gradient_checkpointing_keeps_fewer_activations_for_the_same_gradients():
    torch.manual_seed(0)
    plain = UNet2DDenoiser((1, 16, 16), channels=[16, 32], norm_groups=8).train()
    checkpointed = copy.deepcopy(plain)
    assert enable_gradient_checkpointing(checkpointed) == 1
    x, t = torch.randn(4, 1, 16, 16), torch.tensor([1, 50, 300, 900])
    plain_bytes, plain_grads = saved_bytes(plain, x, t)
    fewer_bytes, grads = saved_bytes(checkpointed, x, t)
    assert fewer_bytes < 0.5 * plain_bytes
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5)


def test_channels_last_and_gradient_checkpointing_train_the_unet(in_tmp):
    recipe = str(REPO / "recipes" / "image" / "digits-diffusion.toml")
    small = ["train.steps=4", "train.checkpoint_every=2", "train.progress=false",
             "sample.n=2", "family.sampling_steps=2", "evaluate.max_examples=4",
             "evaluate.metrics=[]", "evaluate.likelihood.timesteps=2"]
    prepared = prepare(recipe, ["run.dir=last", "train.channels_last=true",
                                "train.gradient_checkpointing=true", *small], echo=print)
    try:
        unet = prepared.trainer.family.denoiser.unet
        conv = next(m for m in unet.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert unet.is_gradient_checkpointing
    finally:
        prepared.close()
    assert main(["run", recipe, "run.dir=last", "train.channels_last=true",
                 "train.gradient_checkpointing=true", *small]) == 0
    assert main(["run", recipe, "run.dir=plain", *small]) == 0
    last = load_file(in_tmp / "last/model/model.safetensors")
    plain = load_file(in_tmp / "plain/model/model.safetensors")
    # the same numbers in another memory order, up to summation order: Adam moves a
    # weight whose gradient is near 0 by up to lr (1e-3) on a rounding difference's sign
    for name, tensor in plain.items():
        torch.testing.assert_close(last[name], tensor, atol=1e-3, rtol=0)
        assert (last[name] - tensor).abs().mean() < 1e-6


@pytest.mark.slow
def test_a_compiled_run_saves_weights_of_the_same_layout_and_resumes_uncompiled(in_tmp):
    # accelerate keeps the first compile setting of a process; the CLI has one per process
    AcceleratorState._reset_state(True)
    try:
        prepared = prepare(RECIPE, ["run.dir=probe", "train.compile=true", *TINY],
                           echo=print)
        try:
            assert isinstance(prepared.trainer.model, torch._dynamo.eval_frame.OptimizedModule)
        finally:
            prepared.close()
    finally:
        AcceleratorState._reset_state(True)
    args = ["run", RECIPE, "train.checkpoint_every=5", "train.keep_checkpoints=5", *TINY]
    for extra in (["run.dir=compiled", "train.compile=true", "train.steps=5"],
                  ["run.dir=compiled", "train.steps=10"],  # compile may change on resume
                  ["run.dir=plain", "train.steps=10"]):
        done = dgm_cli(*args, *extra, cwd=in_tmp)
        assert done.returncode == 0, done.stderr[-3000:]
    compiled = load_file(in_tmp / "compiled/model/model.safetensors")
    plain = load_file(in_tmp / "plain/model/model.safetensors")
    # the same layout; not the same numbers: compiled code draws its training noise
    # with inductor's own generator
    assert compiled.keys() == plain.keys()
    assert all(compiled[k].shape == plain[k].shape and compiled[k].isfinite().all()
               for k in plain)
    losses = [r["loss"] for r in logged(in_tmp / "compiled")]
    assert len(losses) == 10 and losses[-1] < losses[0]
