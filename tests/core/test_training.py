"""Trainer options: EMA, gradient accumulation, bf16 autocast, clipping, non-finite loss."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from torch import nn

from dgm import hookimpl
from dgm.cli import main
from dgm.contract import Family, LogLikelihood
from dgm.errors import RecipeWarning
from dgm.testing import registered_plugin
from tests.conftest import REPO, dgm_cli

RECIPE = str(REPO / "recipes" / "image" / "digits-vae.toml")
TINY = ["train.progress=false", "sample.n=2", "evaluate.likelihood.k=2",
        "evaluate.max_examples=4", "evaluate.metric_samples=4"]


def metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_ema_weights_are_saved_for_sampling_and_differ_from_the_raw_weights(in_tmp):
    assert main(["run", RECIPE, "run.dir=ema", "train.steps=30", "train.ema=true",
                 "train.ema_decay=0.9", "train.checkpoint_every=30", *TINY]) == 0
    final = load_file(in_tmp / "ema" / "model" / "model.safetensors")
    raw = load_file(in_tmp / "ema" / "checkpoints" / "step-00000030" / "model.safetensors")
    key = "decoder.net.0.weight"
    assert not torch.equal(final[key], raw[key])
    ckpt = in_tmp / "ema" / "checkpoints" / "step-00000030"
    assert (ckpt / "ema.safetensors").is_file()
    assert json.loads((ckpt / "train_state.json").read_text())["step"] == 30
    assert not list(ckpt.glob("custom_checkpoint_*.pkl"))  # nothing loads with pickle


def test_resume_with_ema_matches_an_uninterrupted_run(in_tmp):
    args = ["run", RECIPE, "train.steps=40", "train.ema=true", "train.ema_decay=0.9",
            "train.checkpoint_every=20", "train.keep_checkpoints=5", *TINY]
    assert main([*args, "run.dir=whole"]) == 0
    assert main([*args, "run.dir=cut", "train.steps=20"]) == 0
    assert main([*args, "run.dir=cut"]) == 0
    a = load_file(in_tmp / "whole" / "model" / "model.safetensors")
    b = load_file(in_tmp / "cut" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_counts_optimizer_steps(in_tmp):
    assert main(["run", RECIPE, "run.dir=acc", "train.steps=10", "train.grad_accum=3",
                 "train.log_every=5", *TINY]) == 0
    assert [r["step"] for r in metrics(in_tmp / "acc")] == [5, 10]


@pytest.mark.slow
def test_gradient_clipping_and_bf16_autocast_train(tmp_path):
    result = dgm_cli("run", RECIPE, "run.dir=bf16", "train.steps=40",
                     "train.mixed_precision=bf16", "train.max_grad_norm=1.0",
                     "train.log_every=10", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    losses = [r["loss"] for r in metrics(tmp_path / "bf16")]
    assert losses[-1] < losses[0]


class NaNFamily(Family):
    """A one-parameter family whose loss turns NaN on its third call."""

    likelihood_kind = "exact"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        loss = (self.w * batch["x"]).pow(2).mean()
        return (loss * float("nan") if self.calls == 3 else loss), {}

    def sample(self, n, generator=None, condition=None):
        return torch.zeros(n, 1, 8, 8)

    def log_likelihood(self, x, **settings):
        return LogLikelihood(torch.zeros(x.shape[0]), "exact", "test")


class NaNPlugin:
    @hookimpl
    def register_families(self, register):
        register("nan", lambda ctx, **settings: NaNFamily())


@pytest.mark.filterwarnings("ignore::dgm.errors.RecipeWarning")  # the VAE tables
def test_a_nan_loss_stops_the_run_and_names_the_step_and_checkpoint(in_tmp, capsys, host):
    with registered_plugin(NaNPlugin(), "test", host):
        code = main(["run", RECIPE, "run.dir=nan", "family.name=test:nan", "train.steps=5",
                     "train.checkpoint_every=2", *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert "loss became nan at step 3" in err
    assert "Last good checkpoint: nan/checkpoints/step-00000002" in err
    saved = load_file(in_tmp / "nan" / "checkpoints" / "step-00000002" / "model.safetensors")
    assert torch.isfinite(saved["w"])


@pytest.mark.filterwarnings("ignore::dgm.errors.RecipeWarning")  # the VAE tables
def test_a_nan_loss_can_be_skipped(in_tmp, host):
    with registered_plugin(NaNPlugin(), "test", host):
        assert main(["run", RECIPE, "run.dir=skip", "family.name=test:nan", "train.steps=5",
                     "train.on_nan=skip", "train.log_every=1", *TINY]) == 0
    records = metrics(in_tmp / "skip")
    assert {"step": 3, "skipped": "non-finite loss"} in records
    assert max(r["step"] for r in records) == 5


PIXELCNN = str(REPO / "recipes" / "image" / "digits-pixelcnn.toml")
DETERMINISTIC = ["networks.autoregressive.hidden=8", "networks.autoregressive.layers=2",
                 "networks.autoregressive.dropout=0.0", "train.ema=false",
                 "train.progress=false", "sample.n=2", "evaluate.max_examples=4",
                 "evaluate.metrics=[]"]


def test_accumulating_k_micro_batches_matches_one_batch_k_times_larger(in_tmp):
    """The PixelCNN's loss has no sampling noise, so only the batching differs."""
    assert main(["run", PIXELCNN, "run.dir=big", "train.steps=5", "data.batch_size=32",
                 *DETERMINISTIC]) == 0
    assert main(["run", PIXELCNN, "run.dir=acc", "train.steps=5", "data.batch_size=8",
                 "train.grad_accum=4", *DETERMINISTIC]) == 0
    big = load_file(in_tmp / "big" / "model" / "model.safetensors")
    acc = load_file(in_tmp / "acc" / "model" / "model.safetensors")
    for name, tensor in big.items():
        torch.testing.assert_close(acc[name], tensor, atol=1e-5, rtol=1e-4)
    assert main(["run", PIXELCNN, "run.dir=small", "train.steps=5", "data.batch_size=8",
                 *DETERMINISTIC]) == 0
    small = load_file(in_tmp / "small" / "model" / "model.safetensors")
    assert any((small[k] - v).abs().max() > 1e-3 for k, v in big.items())  # not vacuous


def test_a_checkpoint_write_killed_midway_leaves_the_previous_one_in_use(in_tmp):
    """A kill during save leaves a hidden .partial folder (written before the rename);
    resume ignores it, uses the last complete checkpoint, and finishes bit for bit."""
    args = ["run", RECIPE, "train.checkpoint_every=10", "train.keep_checkpoints=5", *TINY]
    assert main([*args, "run.dir=whole", "train.steps=20"]) == 0
    assert main([*args, "run.dir=cut", "train.steps=10"]) == 0
    checkpoints = in_tmp / "cut" / "checkpoints"
    complete = checkpoints / "step-00000010"
    partial = checkpoints / ".partial-step-00000020"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(
        (complete / "model.safetensors").read_bytes()[:100])  # cut off mid-write
    before = {p.name: p.read_bytes() for p in complete.iterdir()}
    assert main([*args, "run.dir=cut", "train.steps=20"]) == 0
    assert {p.name: p.read_bytes() for p in complete.iterdir()} == before
    assert not partial.exists()
    a = load_file(in_tmp / "whole" / "model" / "model.safetensors")
    b = load_file(in_tmp / "cut" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


class DtypeFamily(Family):
    """A one-layer family that records the dtype its layer computes in."""

    likelihood_kind = "exact"

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(64, 1)
        self.dtypes: set[torch.dtype] = set()

    def loss(self, batch):
        out = self.layer(batch["x"].flatten(1))
        self.dtypes.add(out.dtype)
        return out.float().pow(2).mean(), {}

    def sample(self, n, generator=None, condition=None):
        return torch.zeros(n, 1, 8, 8)

    def log_likelihood(self, x, **settings):
        return LogLikelihood(torch.zeros(x.shape[0]), "exact", "test")


def test_mixed_precision_setting_decides_the_dtype_the_network_computes_in(
        in_tmp, host, recwarn):
    """bf16 autocasts the forward pass on CPU; fp16, which needs a GPU's loss scaling,
    says so and trains in fp32 rather than silently doing either."""
    made: list[DtypeFamily] = []

    class Plugin:
        @hookimpl
        def register_families(self, register):
            register("dtype", lambda ctx, **settings: made.append(DtypeFamily()) or made[-1])

    seen = {}
    try:
        with registered_plugin(Plugin(), "test", host):
            for precision in ("no", "bf16", "fp16"):
                # accelerate keeps one precision per process; the CLI runs one per process
                AcceleratorState._reset_state(True)
                assert main(["run", RECIPE, f"run.dir={precision}", "family.name=test:dtype",
                             "train.steps=2", f"train.mixed_precision={precision}",
                             *TINY]) == 0
                trained = [f for f in made if not f.layer.weight.is_meta]  # not the estimate's
                seen[precision] = trained[0].dtypes
                made.clear()
    finally:
        AcceleratorState._reset_state(True)
    assert seen == {"no": {torch.float32}, "bf16": {torch.bfloat16}, "fp16": {torch.float32}}
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RecipeWarning)]
    fp16 = [m for m in messages if "'fp16' needs a GPU" in m and "trains in fp32" in m]
    assert len(fp16) == 1  # said by training, not again when the run samples and evaluates


class AlwaysNaNFamily(NaNFamily):
    """Finite for two batches, then NaN for good: weights that have gone bad."""

    def loss(self, batch):
        self.calls += 1
        loss = (self.w * batch["x"]).pow(2).mean()
        return (loss * float("nan") if self.calls > 2 else loss), {}


class AlwaysNaNPlugin:
    @hookimpl
    def register_families(self, register):
        register("always-nan", lambda ctx, **settings: AlwaysNaNFamily())


@pytest.mark.filterwarnings("ignore::dgm.errors.RecipeWarning")  # the VAE tables
def test_skipping_gives_up_after_a_bounded_run_of_nans_and_keeps_the_checkpoint(in_tmp,
                                                                               capsys, host):
    from dgm.training import SKIPS_IN_A_ROW

    with registered_plugin(AlwaysNaNPlugin(), "test", host):
        args = ["run", RECIPE, "run.dir=bad", "family.name=test:always-nan",
                "train.steps=50", "train.checkpoint_every=2", "train.log_every=1", *TINY]
        assert main(args) == 2  # stops: NaN at step 3, with the default on_nan = "stop"
        capsys.readouterr()
        assert main([*args, "train.on_nan=skip"]) == 2  # the same folder takes the change
    err = capsys.readouterr().err
    # resumed from step 2, two good batches (steps 3 and 4), then NaN for good
    assert f"non-finite on {SKIPS_IN_A_ROW + 1} batches in a row at step 5" in err
    assert "bad/checkpoints/step-00000004" in err and "different recipe" not in err
    records = metrics(in_tmp / "bad")
    assert sum("skipped" in r for r in records) == SKIPS_IN_A_ROW
    saved = load_file(in_tmp / "bad" / "checkpoints" / "step-00000004" / "model.safetensors")
    assert torch.isfinite(saved["w"])
    assert 'on_nan = "skip"' in (in_tmp / "bad" / "recipe.toml").read_text()
