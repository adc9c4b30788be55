"""Checkpoints never execute pickled code: a crafted file is refused with a clear error,
and recipes cannot name Python objects."""

from __future__ import annotations

import pickle

import pytest

from dgm.cli import main
from dgm.errors import RegistryError, RunDirError
from tests.conftest import REPO

RECIPE = str(REPO / "recipes/image/digits-vae.toml")
QUICK = ["train.progress=false", "sample.n=2", "evaluate.likelihood.k=2",
         "evaluate.max_examples=4", "evaluate.metrics=[]", "train.checkpoint_every=2"]


class RunsCode:
    """Unpickling this object would create the file ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("victim", ["random_states_0.pkl", "optimizer.bin"])
def test_a_checkpoint_crafted_to_run_code_is_refused(in_tmp, victim):
    assert main(["run", RECIPE, "run.dir=out", "train.steps=2", *QUICK]) == 0
    checkpoint = next((in_tmp / "out" / "checkpoints").iterdir())
    marker = in_tmp / "pwned"
    with open(checkpoint / victim, "wb") as f:
        pickle.dump({"state": RunsCode(str(marker))}, f, protocol=2)
    with pytest.raises(RunDirError, match=f"{checkpoint.name}.*refused.*{victim}") as refused:
        main(["--traceback", "run", RECIPE, "run.dir=out", "train.steps=4", *QUICK])
    message = str(refused.value)
    assert "Unsupported global" in message or "open" in message
    for advice in ("weights_only", "add_safe_globals", "trust"):  # PyTorch's way around it
        assert advice not in message
    assert not marker.exists()
    assert (checkpoint / victim).is_file()  # evidence kept, nothing overwritten


def test_recipes_name_registered_entries_not_python_objects(in_tmp):
    with pytest.raises(RegistryError, match="unknown family 'os:system'"):
        main(["--traceback", "run", RECIPE, "run.dir=out", "family.name=os:system",
              *QUICK])
