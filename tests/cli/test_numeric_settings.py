"""Numbers the recipe checks refuse before anything is built (#13, finding 6): each is
one paragraph naming the key, and nothing is written."""

from __future__ import annotations

import re

import pytest

from tests.cli.test_errors import RECIPE, TINY, error_of
from tests.conftest import REPO


@pytest.mark.parametrize(("override", "wanted"), [
    ("data.num_workers=-1", "key 'num_workers' should be at least 0, got -1"),
    ("run.seed=-1", "key 'seed' should be at least 0, got -1"),
    ("train.lr=-0.1", "key 'lr' should be above 0, got -0.1"),
    ("train.lr=0", "key 'lr' should be above 0, got 0"),
    ("train.max_grad_norm=-1", "key 'max_grad_norm' should be at least 0"),
    ("evaluate.max_examples=-1", "key 'max_examples' should be at least 0, got -1"),
    ("evaluate.batch_size=0", "key 'batch_size' should be at least 1, got 0"),
    ("condition.dropout=-0.5", "key 'dropout' should be at least 0"),
    ("evaluate.likelihood.k=0", "key 'k' should be an integer at least 1, got 0"),
    ("family.latent_dim=0", "key 'latent_dim' should be an integer at least 1, got 0"),
])
def test_an_out_of_range_number_is_refused_naming_the_key(capsys, in_tmp, override, wanted):
    err = error_of(capsys, "run", RECIPE, "run.dir=out", *TINY, override)
    assert wanted in err and override.split("=")[0].split(".")[0] in err
    assert not (in_tmp / "out").exists()


@pytest.mark.parametrize("key", ["lr", "max_grad_norm"])
def test_a_nan_in_a_recipe_file_is_refused_naming_the_key(capsys, in_tmp, key):
    text = (REPO / "recipes" / "image" / "digits-vae.toml").read_text()
    text = re.sub(rf"(?m)^{key} = .*$", f"{key} = nan", text, count=1)
    (in_tmp / "nan.toml").write_text(text)
    err = error_of(capsys, "run", "nan.toml", "run.dir=out", *TINY)
    assert f"[train]: key {key!r} should be a finite number, got nan" in err
    assert not (in_tmp / "out").exists()
