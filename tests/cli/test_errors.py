"""Bad input: one-paragraph errors that name the file or key, and no traceback."""

from __future__ import annotations

import pytest

from dgm.cli import main
from tests.conftest import REPO, dgm_cli

RECIPE = str(REPO / "recipes" / "image" / "digits-vae.toml")
TINY = ["train.steps=2", "train.progress=false", "evaluate.likelihood.k=2",
        "evaluate.max_examples=8", "sample.n=4", "evaluate.metric_samples=8"]


def error_of(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("dgm: error: ") and "Traceback" not in err
    assert err.count("\n") == 1, f"not one paragraph: {err!r}"
    return err


def test_unknown_recipe_key_names_file_key_and_closest(capsys, in_tmp):
    (in_tmp / "typo.toml").write_text((REPO / "recipes" / "image" / "digits-vae.toml")
                                      .read_text().replace("steps = 1000", "stpes = 5"))
    err = error_of(capsys, "run", "typo.toml", "train.lr=0.01")
    assert "typo.toml: [train]: unknown key 'stpes'. Did you mean 'steps'?" in err
    assert "Expected one of: steps, lr" in err


def test_errors_about_command_line_keys_name_the_override(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "train.stpes=5")
    assert ("dgm: error: command-line override train.stpes=5: [train]: unknown key 'stpes'. "
            "Did you mean 'steps'?") in err
    err = error_of(capsys, "run", RECIPE, "family.bogus=1")
    assert "command-line override family.bogus=1: [family]: unknown key 'bogus'" in err
    err = error_of(capsys, "run", RECIPE, "networks.encoder.hiden=[8]")
    assert ("command-line override networks.encoder.hiden=[8]: [networks.encoder]: unknown "
            "key 'hiden'") in err
    err = error_of(capsys, "run", RECIPE, "family.name=core:vea")
    assert "command-line override family.name=core:vea: family.name: unknown family" in err
    err = error_of(capsys, "run", RECIPE, "trian.steps=3")
    assert "command-line override trian.steps=3: unknown section [trian]" in err


def test_wrong_type_names_key_and_expected_type(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "train.steps=many")
    assert "[train]: key 'steps' should be an integer, got 'many' (str)" in err


def test_wrong_type_in_a_registered_factory_setting(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "family.latent_dim=2.5")
    assert "[family]: key 'latent_dim' should be an integer at least 1, got 2.5" in err


def test_unknown_registered_name_suggests_the_closest(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "family.name=core:vea")
    assert "family.name: unknown family 'core:vea'. Did you mean 'core:vae'?" in err


def test_unknown_network_setting(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "networks.decoder.hiden=[3]")
    assert "[networks.decoder]: unknown key 'hiden'. Did you mean 'hidden'?" in err


def test_unknown_section(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "trian.steps=3")
    assert "unknown section [trian]. Did you mean [train]?" in err


def test_missing_recipe_file(capsys, in_tmp):
    err = error_of(capsys, "run", "recipes/nope.toml")
    assert "recipe file 'recipes/nope.toml' does not exist" in err


def test_invalid_toml_names_the_file(capsys, in_tmp):
    (in_tmp / "bad.toml").write_text("[run\nname = 1\n")
    err = error_of(capsys, "run", "bad.toml")
    assert "bad.toml: not valid TOML" in err


def test_a_folder_that_is_not_a_run(capsys, in_tmp):
    (in_tmp / "somewhere").mkdir()
    err = error_of(capsys, "sample", "somewhere", "--n", "2")
    assert "'somewhere' is not a dgm run folder: it has no recipe.toml" in err
    err = error_of(capsys, "evaluate", "missing-folder")
    assert "run folder 'missing-folder' does not exist" in err


def test_weights_that_do_not_fit_the_recipes_networks(capsys, in_tmp):
    """A run saved by another version of a network loads with a message, not a
    state-dict dump, and nothing in the folder changes."""
    import torch
    from safetensors.torch import load_file, save_file

    assert main(["run", RECIPE, "run.dir=old", *TINY]) == 0
    weights = in_tmp / "old" / "model" / "model.safetensors"
    saved = load_file(weights)
    saved["decoder.renamed.weight"] = saved.pop(sorted(saved)[0])
    save_file(saved, weights)
    before = weights.read_bytes()
    capsys.readouterr()
    err = error_of(capsys, "sample", "old", "--n", "2")
    assert "run folder 'old': its weights (old/model/model.safetensors) do not fit the " \
           "networks its recipe builds now" in err
    assert "another version of dgm or of the plugins it uses (core, image)" in err
    assert "decoder.renamed.weight" in err and len(err) < 1000
    assert weights.read_bytes() == before
    assert torch.equal(load_file(weights)["decoder.renamed.weight"],
                       saved["decoder.renamed.weight"])


def test_likelihood_that_does_not_fit_the_data(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "likelihood.name=core:bernoulli")
    assert ("[likelihood]: core:bernoulli cannot be built with these settings: the Bernoulli "
            "likelihood models binary data, the grid {0, 1}") in err
    assert "the data here is on the 17-level grid on [-1, 1]" in err


def test_corrupt_image_in_a_folder_data_set_names_the_file(capsys, in_tmp):
    from PIL import Image

    images = in_tmp / "imgs"
    images.mkdir()
    for i in range(12):
        Image.new("L", (8, 8), color=i * 20).save(images / f"ok{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    err = error_of(capsys, "run", RECIPE, "data.name=image:folder", f"data.path={images}",
                   "data.mode=L", "data.val_fraction=0.0", "data.test_fraction=0.0",
                   "likelihood.levels=256", *TINY)
    assert f"cannot read image '{images / 'broken.png'}'" in err
    assert "data.skip_bad = true" in err


def test_conv_network_that_cannot_fit_the_shape(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "networks.encoder.name=image:conv-encoder",
                   "networks.encoder.channels=[8,8,8,8]", "networks.encoder.hidden=64")
    assert "[networks.encoder]: image:conv-encoder cannot be built" in err
    assert "divisible by 16" in err


@pytest.mark.slow
def test_a_plugin_that_failed_to_import_is_named_when_its_entry_is_asked_for(tmp_path):
    from tests.core.test_plugins import fake_distribution

    fake_distribution(tmp_path, "broken", "import not_a_module_anywhere\n")
    result = dgm_cli("run", RECIPE, "data.name=broken:signals",
                     env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown dataset 'broken:signals'" in result.stderr
    assert "Plugin 'broken' failed to load: ModuleNotFoundError" in result.stderr


def test_traceback_on_request(in_tmp):
    with pytest.raises(Exception, match="unknown key 'stpes'"):
        main(["--traceback", "run", RECIPE, "train.stpes=5"])


def test_unknown_data_key_suggests_the_trainer_keys_too(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "data.batchsize=8")
    assert "[data]: unknown key 'batchsize'. Did you mean 'batch_size'?" in err


def test_every_command_says_what_it_does(capsys):
    for command in ("run", "sample", "evaluate", "recipes", "plugins", "show"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: dgm {command}" in out and len(out.split("\n\n")[1]) > 40


def test_evaluation_settings_are_checked_before_training(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "run.dir=early", "evaluate.likelihood.kk=10")
    assert "[evaluate.likelihood]: unknown key 'kk'. Did you mean 'k'?" in err
    assert not (in_tmp / "early").exists()


def test_counts_that_must_be_positive(capsys, in_tmp):
    err = error_of(capsys, "run", RECIPE, "train.log_every=0")
    assert "[train]: key 'log_every' should be at least 1, got 0" in err


@pytest.mark.slow
def test_a_networks_table_the_family_never_reads_is_reported_once_by_the_command(tmp_path):
    """A misspelt role used to be ignored in silence; the real command prints one line
    that names the file, the table and the roles the family does build, then trains."""
    (tmp_path / "typo.toml").write_text(RECIPE_TEXT.replace("[networks.decoder]",
                                                            "[networks.decodr]"))
    result = dgm_cli("run", "typo.toml", "run.dir=out", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warning = ("dgm: warning: typo.toml: [networks.decodr]: the family core:vae builds no "
               "'decodr' network (it builds: decoder, encoder); this table is ignored")
    assert result.stderr.count(warning) == 1, result.stderr
    assert "RecipeWarning" not in result.stderr


RECIPE_TEXT = (REPO / "recipes" / "image" / "digits-vae.toml").read_text()
