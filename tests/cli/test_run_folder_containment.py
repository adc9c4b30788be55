"""A recipe decides nothing about where files go (#13, finding 3): a run name is one safe
folder name, and a run folder outside the current folder needs the person running dgm
to say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgm.cli import main
from tests.cli.test_errors import RECIPE, TINY, error_of


@pytest.mark.parametrize("name", ["../../escaped", "..", "", ".", "a/b", "bad\nname",
                                  "evil\u202egnp", "-dash"])
def test_a_run_name_that_is_not_one_safe_folder_name_is_refused(capsys, in_tmp, name):
    work = in_tmp / "work"
    work.mkdir()
    err = error_of(capsys, "run", RECIPE, f"run.name={name}", *TINY) if "\n" not in name \
        else _refused_by_recipe_file(capsys, work, name)
    assert "run.name" in err and "is not a safe run name" in err
    assert sorted(p.name for p in in_tmp.iterdir()) == ["work"]
    assert not (in_tmp / "runs").exists()


def _refused_by_recipe_file(capsys, work, name: str) -> str:
    text = f'[run]\nname = "{name.encode("unicode_escape").decode()}"\n'
    (work / "r.toml").write_text(text + Path(RECIPE).read_text().split("\n", 4)[-1])
    return error_of(capsys, "run", str(work / "r.toml"), *TINY)


def test_a_run_folder_outside_the_current_folder_needs_allow_outside(capsys, in_tmp,
                                                                    monkeypatch):
    work = in_tmp / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = in_tmp / "elsewhere"
    err = error_of(capsys, "run", RECIPE, f"run.dir={outside}", *TINY)
    assert "run.dir" in err and "outside the current folder" in err
    assert "--allow-outside" in err and "DGM_RUNS_ROOT" in err
    assert not outside.exists()
    err = error_of(capsys, "run", RECIPE, "run.dir=../elsewhere", *TINY)
    assert "outside the current folder" in err and not outside.exists()
    err = error_of(capsys, "run", RECIPE, "run.dir=.", *TINY)
    assert "is the current folder" in err
    assert main(["run", RECIPE, f"run.dir={outside}", *TINY, "--allow-outside"]) == 0
    assert (outside / "model" / "model.safetensors").is_file()
    monkeypatch.setenv("DGM_RUNS_ROOT", str(in_tmp / "root"))
    assert main(["run", RECIPE, f"run.dir={in_tmp / 'root' / 'a'}", *TINY]) == 0
    assert (in_tmp / "root" / "a" / "recipe.toml").is_file()
