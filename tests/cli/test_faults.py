"""Fault injection (#13, findings 5, 6 and 8): resources beyond the machine, a full disk,
denied writes, damaged files in a run folder, recipes nested too deep, data that loops
back on itself. Each fault is one paragraph that names the file or key, and nothing
already saved is lost."""

from __future__ import annotations

import errno
import json
import pathlib
import shutil

import pytest
from safetensors.torch import load_file

from dgm import hookimpl
from dgm.cli import main
from dgm.likelihoods import Bernoulli
from dgm.testing import registered_plugin
from dgm.training import Trainer
from tests.cli.test_errors import RECIPE, TINY, error_of
from tests.conftest import dgm_cli

CHECKPOINTED = [*TINY, "train.checkpoint_every=2", "train.keep_checkpoints=3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 4-step run with checkpoints at steps 2 and 4, copied by each test."""
    root = tmp_path_factory.mktemp("trained")
    code = dgm_cli("run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=4",
                   cwd=root).returncode
    assert code == 0
    return root / "run"


@pytest.fixture
def run(trained, in_tmp):
    shutil.copytree(trained, in_tmp / "run")
    return in_tmp / "run"


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# -- finding 5: resources ------------------------------------------------------------------

@pytest.mark.parametrize("override", ["networks.encoder.hidden=[60000,60000]",
                                      "family.latent_dim=1000000000"])
def test_a_model_too_large_for_the_machine_is_refused_before_it_is_allocated(
        capsys, in_tmp, override):
    err = error_of(capsys, "run", RECIPE, "run.dir=out", *TINY, override)
    assert override in err and "GB, more than the" in err and "this run may use" in err
    assert "parameters" in err and "train.max_memory_gb" in err
    assert not (in_tmp / "out").exists()


def test_the_memory_limit_is_a_setting(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "run.dir=out", *TINY, "train.max_memory_gb=0.001")
    assert "374,432 parameters" in err and "more than the 1.0 MB this run may use" in err


@pytest.mark.slow
def test_a_tampered_data_info_shape_is_refused_before_building(capsys, run):
    path = run / "model" / "data_info.json"
    info = json.loads(path.read_text())
    info["shape"] = [1, 100000, 100000]
    path.write_text(json.dumps(info))
    err = error_of(capsys, "sample", "run", "--n", "2", "--out", "samples-new")
    assert "data_info.json: the shape [1, 100000, 100000]" in err
    assert "10,000,000,000 numbers per example" in err and "run the same `dgm run`" in err


def test_samples_are_written_as_they_are_drawn_and_a_full_disk_stops_them(
        capsys, run, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr("dgm.sampling.shutil.disk_usage",
                        lambda path: real(path)._replace(free=10_000))
    err = error_of(capsys, "sample", "run", "--n", "100000", "--out", "many")
    assert "the other 99,744 samples would need about" in err
    assert "stopped after writing 256 (kept)" in err and "--out" in err
    assert len(list((run.parent / "many").glob("sample-*.png"))) == 256


def test_sampling_at_an_absurd_size_is_refused(capsys):
    from types import SimpleNamespace

    from dgm.errors import RecipeError
    from dgm.sampling import _batch_that_fits

    loaded = SimpleNamespace(info=SimpleNamespace(shape=(3, 64, 64)),
                             recipe=SimpleNamespace(train=SimpleNamespace(max_memory_gb=8.0)))
    with pytest.raises(RecipeError, match="size '100000x100000': one sample shaped "
                       "3x100000x100000 needs about"):
        _batch_that_fits(loaded, (100000, 100000), 256, "100000x100000")
    assert _batch_that_fits(loaded, (64, 64), 256, "64x64") == 256
    assert 1 <= _batch_that_fits(loaded, (1024, 1024), 256, "1024x1024") < 256


# -- finding 6: the disk, permissions and damaged files -------------------------------------

def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_resumes(
        capsys, run, monkeypatch):
    before = snapshot(run / "checkpoints" / "step-00000004")
    real = Trainer._save_extra_state

    def full(self, folder):
        if self.state.step == 6:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "x"))
        real(self, folder)

    monkeypatch.setattr(Trainer, "_save_extra_state", full)
    err = error_of(capsys, "run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=8")
    assert "could not write checkpoint step-00000006" in err
    assert "No space left on device" in err and "MB are free on that disk" in err
    assert "Nothing already saved was lost" in err and "step-00000004, is where" in err
    assert snapshot(run / "checkpoints" / "step-00000004") == before
    assert not list((run / "checkpoints").glob(".partial-*"))
    monkeypatch.setattr(Trainer, "_save_extra_state", real)
    assert main(["run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=8"]) == 0
    assert "resumed from step 4" in capsys.readouterr().out


def test_a_full_disk_while_writing_the_recipe_leaves_no_file_that_blocks_the_folder(
        capsys, in_tmp, monkeypatch):
    real = pathlib.Path.write_text

    def full(self, text, *args, **kwargs):
        if self.name.startswith("recipe.toml."):
            real(self, text[:10])  # part of it reached the disk
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    err = error_of(capsys, "run", RECIPE, "run.dir=out", *TINY)
    assert "recipe.toml" in err and "the disk is full" in err
    assert [p.name for p in (in_tmp / "out").iterdir() if p.name != ".lock"] == []
    monkeypatch.setattr(pathlib.Path, "write_text", real)
    (in_tmp / "out" / "recipe.toml.4242.tmp").write_text("[run")  # one a kill left
    assert main(["run", RECIPE, "run.dir=out", *TINY]) == 0
    assert not list((in_tmp / "out").glob("*.tmp"))


def test_a_run_folder_that_cannot_be_written_is_one_paragraph(capsys, run, monkeypatch):
    import os

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("dgm.run_lock.os.open", denied)
    for argv in (["run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=6"],
                 ["sample", "run", "--n", "2"]):
        err = error_of(capsys, *argv)
        assert "could not open" in err and ".lock" in err
        assert "permission was denied (EACCES)" in err
    monkeypatch.setattr("dgm.run_lock.os.open", os.open)


@pytest.mark.parametrize("damage", ["empty folder", "no train_state", "garbage train_state",
                                    "garbage weights"])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_one_before_resumed(
        capsys, run, damage):
    newest = run / "checkpoints" / "step-00000004"
    earlier = snapshot(run / "checkpoints" / "step-00000002")
    if damage == "empty folder":
        newest = run / "checkpoints" / "step-00000009"
        newest.mkdir()
    elif damage == "no train_state":
        (newest / "train_state.json").unlink()
    elif damage == "garbage train_state":
        (newest / "train_state.json").write_text('{"step": "x"')
    else:
        (newest / "model.safetensors").write_bytes(b"\x00garbage" * 8)
    kept = snapshot(newest)
    with pytest.warns(UserWarning, match=f"checkpoint '.*{newest.name}' is damaged"):
        assert main(["run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=6"]) == 0
    out = capsys.readouterr().out
    resumed = 2 if damage != "empty folder" else 4
    assert f"resumed from step {resumed}" in out
    aside = run / "checkpoints" / f".damaged-{newest.name}"
    assert snapshot(aside) == kept  # kept as it was, for whoever wants to look
    if damage != "empty folder":
        assert snapshot(run / "checkpoints" / "step-00000002") == earlier


def test_damaged_final_weights_say_how_to_rewrite_them(capsys, run):
    (run / "model" / "model.safetensors").write_bytes(b"\xff" * 100)
    err = error_of(capsys, "sample", "run", "--n", "2")
    assert "model.safetensors) are damaged and cannot be read" in err
    assert "run the same `dgm run`" in err.lower()
    assert main(["run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=4"]) == 0
    assert "nothing left to train" in capsys.readouterr().out
    load_file(run / "model" / "model.safetensors")  # rewritten from the last checkpoint
    assert main(["sample", "run", "--n", "2", "--out", "again"]) == 0


def test_a_garbage_data_info_is_one_paragraph(capsys, run):
    (run / "model" / "data_info.json").write_text("garbage")
    err = error_of(capsys, "evaluate", "run")
    assert "data_info.json is damaged and cannot be read (JSONDecodeError" in err


def test_a_recipe_nested_too_deep_is_refused(capsys, in_tmp):
    deep = in_tmp / "deep.toml"
    deep.write_text(pathlib.Path(RECIPE).read_text() + "\n[run.x]\ny = " + "[" * 3000
                    + "]" * 3000 + "\n")
    err = error_of(capsys, "run", str(deep), *TINY)
    assert "deep.toml: tables and lists are nested more than 32 deep" in err
    deep.write_text(pathlib.Path(RECIPE).read_text() + "\n[run.x]\ny = " + "[" * 40
                    + "]" * 40 + "\n")
    assert "nested more than 32 deep" in error_of(capsys, "run", str(deep), *TINY)


def test_a_run_whose_data_loops_back_to_itself_is_refused(capsys, run):
    path = run / "model" / "data_info.json"
    info = json.loads(path.read_text())
    info.update(modality="core:latent", shape=[16], levels=None,
                source={"run": str(run.resolve())})
    path.write_text(json.dumps(info))
    err = error_of(capsys, "sample", "run", "--n", "2")
    assert "loops back on itself" in err and str(run.resolve()) in err


def test_a_misspelt_key_for_a_factory_taking_any_key_names_the_table(capsys, in_tmp, host):
    class Plugin:
        @hookimpl
        def register_likelihoods(self, register):
            register("passing", lambda **settings: Bernoulli(**settings))

    with registered_plugin(Plugin(), "test", host):
        err = error_of(capsys, "run", RECIPE, "run.dir=out", *TINY,
                       "likelihood.name=test:passing", "likelihood.levles=2")
    assert "[likelihood]: test:passing (plugin test) takes any key" in err
    assert "The keys given were: levles" in err


# -- findings 6 and 8: what a run writes ----------------------------------------------------

@pytest.mark.slow
def test_progress_into_a_log_is_plain_lines(in_tmp):
    result = dgm_cli("run", RECIPE, "run.dir=out", *TINY, "train.progress=true",
                     cwd=in_tmp)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert "out: step 2/2" in result.stderr


def test_the_saved_recipe_writes_out_the_defaults_of_everything_built(run, capsys):
    saved = (run / "recipe.toml").read_text()
    for line in ("beta = 1.0", "sample_mean = false", "min_log_scale = -7.0",
                 'name = "core:standard-normal"', 'condition = "class"'):
        assert line in saved  # none of them is in the recipe file
    # a folder written before the defaults were saved resumes with the same recipe ...
    defaults = ("beta = 1.0", "min_log_scale = -7.0", 'condition = "class"')
    old = "\n".join(line for line in saved.splitlines() if line not in defaults)
    (run / "recipe.toml").write_text(old)
    assert main(["run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=6"]) == 0
    assert "resumed from step 4" in capsys.readouterr().out
    # ... but not with a setting that differs from the default it was trained with
    err = error_of(capsys, "run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=8",
                   "family.beta=0.5")
    assert "differs in: family.beta" in err


def test_each_logged_loss_says_how_many_steps_it_covers(run, capsys):
    assert main(["run", RECIPE, "run.dir=run", *CHECKPOINTED, "train.steps=7",
                 "train.log_every=3"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    after = [(r["step"], r["window_steps"]) for r in records if r["step"] > 4]
    assert after == [(6, 2), (7, 1)]  # resumed at 4: steps 5-6, then 7



def test_sample_metrics_from_few_examples_come_with_a_warning(capsys, in_tmp):
    import numpy as np
    from PIL import Image

    images = in_tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(images / f"{i}.png")
    with pytest.warns(UserWarning, match=r"compare only 4 examples per set \(evaluate."
                      r"metric_samples = 64, but the test split holds 4\)"):
        assert main(["run", RECIPE, "run.dir=out", *TINY, "data.name=image:folder",
                     "data.path=images", "data.test_fraction=0.2", "data.val_fraction=0",
                     "data.mode=L", "data.batch_size=8", "evaluate.metric_samples=64"]) == 0


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(capsys, in_tmp):
    """A SIGKILL inside the first checkpoint write leaves metrics and no checkpoint: the
    run starts again from step 0 and must not keep the first attempt's records."""
    run = in_tmp / "out"
    run.mkdir()
    assert main(["run", RECIPE, "run.dir=out", *TINY, "train.steps=4", "train.log_every=2",
                 "train.checkpoint_every=4"]) == 0
    shutil.rmtree(run / "checkpoints")
    assert main(["run", RECIPE, "run.dir=out", *TINY, "train.steps=4", "train.log_every=2",
                 "train.checkpoint_every=4"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text()
             .splitlines()]
    assert steps == [2, 4]
