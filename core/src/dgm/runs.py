"""The run folder: one folder holds everything a run made.

::

    recipe.toml          the resolved recipe (every default written out)
    checkpoints/step-N/  accelerate state: weights (safetensors), optimizer, RNG, step
    model/               final weights (model.safetensors), recipe.toml, data_info.json
    metrics.jsonl        one JSON object per logged step
    samples/             sample files and a preview grid
    evaluation.json      held-out likelihood in nats and bits per dimension
    loss.png             the loss curve
    summary.md           what a person opens first
    logs/                experiment trackers' files (train.log_with, e.g. TensorBoard's)
    .lock                who writes the folder now (empty when nobody does; dgm.run_lock)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dgm.contract import DataInfo
from dgm.errors import RecipeError, RunDirError
from dgm.recipes import Recipe, read_recipe
from dgm.run_lock import LOCK_NAME

CHECKPOINT_PREFIX = "step-"


class RunDir:
    """Paths and small file formats of one run folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """An existing run folder; anything else is a :class:`RunDirError`."""
        run = cls(Path(path))
        if not run.path.exists():
            raise RunDirError(f"run folder {str(path)!r} does not exist")
        if not run.path.is_dir() or not run.recipe_file.is_file():
            raise RunDirError(f"{str(path)!r} is not a dgm run folder: it has no recipe.toml. "
                              "Give the folder `dgm run` created (by default runs/<name>)")
        return run

    recipe_file = property(lambda self: self.path / "recipe.toml")
    checkpoints = property(lambda self: self.path / "checkpoints")
    model_dir = property(lambda self: self.path / "model")
    weights_file = property(lambda self: self.path / "model" / "model.safetensors")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    samples_dir = property(lambda self: self.path / "samples")
    evaluation_file = property(lambda self: self.path / "evaluation.json")
    loss_plot = property(lambda self: self.path / "loss.png")
    summary_file = property(lambda self: self.path / "summary.md")

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step:08d}"

    def complete_checkpoints(self) -> list[Path]:
        """Finished checkpoints, oldest first (a write in progress has another name)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir()
                      if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))

    def latest_checkpoint(self) -> Path | None:
        done = self.complete_checkpoints()
        return done[-1] if done else None

    def prune_checkpoints(self, keep: int) -> None:
        for old in self.complete_checkpoints()[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        if self.checkpoints.is_dir():
            for partial in self.checkpoints.glob(".partial-*"):
                shutil.rmtree(partial, ignore_errors=True)

    # -- metrics ------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        out = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        return out

    def truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run logs those steps again)."""
        if not self.metrics_file.exists():
            return
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        write_text_atomic(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))

    # -- data description ---------------------------------------------------------------

    def write_data_info(self, info: DataInfo) -> None:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(info)
        write_json(self.model_dir / "data_info.json", data)

    def read_data_info(self) -> DataInfo:
        path = self.model_dir / "data_info.json"
        if not path.is_file():
            raise RunDirError(f"run folder {str(self.path)!r} has no trained model yet "
                              f"({path} is missing): finish training with `dgm run`")
        redo = ("; run the same `dgm run` command again: it rewrites model/ from the last "
                "checkpoint without training anew")
        try:
            data = json.loads(path.read_text())
            data["shape"] = tuple(data["shape"])
            data["value_range"] = tuple(data["value_range"])
            data["classes"] = tuple(data.get("classes", ()))
            info = DataInfo(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise RunDirError(f"{path} is damaged and cannot be read ({type(exc).__name__}: "
                              f"{exc}){redo}") from None
        for what, shape in (("shape", info.shape), ("condition shape", info.condition.shape)):
            problem = _unlikely_shape(shape)
            if problem:
                raise RunDirError(f"{path}: the {what} {list(shape)} {problem}; the file was "
                                  f"changed by hand or is damaged{redo}")
        return info


MAX_EXAMPLE_ELEMENTS = 2**28
"""The most numbers one example (or one condition) may hold when read from a file: a
1-channel 16384x16384 image; a larger shape in data_info.json is damage, not data."""


def _unlikely_shape(shape: Any) -> str | None:
    """Why ``shape`` cannot be an example's shape, or None."""
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        return "holds something other than whole numbers"
    if any(s < 1 for s in shape):
        return "has a dimension below 1"
    elements = 1
    for s in shape:
        elements *= s
    if elements > MAX_EXAMPLE_ELEMENTS:
        return f"is {elements:,} numbers per example, more than the {MAX_EXAMPLE_ELEMENTS:,} " \
               "dgm reads from a file"
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside ``path`` and rename, so a kill never leaves a half-written file. The
    temporary name carries the process id: two writers never rename each other's file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException as exc:  # a full disk or a kill: leave no half-written file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # say which file it was
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


TEMPORARY_SUFFIX = ".tmp"
"""What dgm's own half-written files end in; one left by a killed process never makes a
folder look like someone else's."""


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))


RESUMABLE_CHANGES = {("train", "steps"), ("run", "dir"), ("run", "description"),
                     ("train", "on_nan"), ("train", "log_every"), ("train", "progress"),
                     ("train", "checkpoint_every"), ("train", "keep_checkpoints"),
                     ("train", "max_grad_norm"), ("train", "max_memory_gb"),
                     ("train", "log_with"), ("train", "compile"),
                     ("train", "channels_last"), ("sample",),
                     ("evaluate",)}
"""Keys (or whole tables) that may differ between a run folder's recipe and a command
resuming it: what does not change the model being trained, and what a NaN error tells a
user to change (``max_grad_norm``, ``on_nan``). The learning rate is not among them: the
optimizer's saved state would keep the old one."""


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A run name: one folder name, no path, nothing a terminal shows differently."""
RUNS_ROOT_VARIABLE = "DGM_RUNS_ROOT"


def run_dir_for(recipe: Recipe, allow_outside: bool = False) -> RunDir:
    """The folder a recipe's run lives in: ``run.dir``, else ``runs/<run.name>``.

    ``run.name`` must be one safe folder name, and the folder must lie inside the
    current folder or inside ``$DGM_RUNS_ROOT``: a recipe from someone else cannot make
    dgm write elsewhere unless the person running it says so (``allow_outside``,
    ``dgm run --allow-outside``)."""
    run = recipe.run
    if not SAFE_NAME.fullmatch(run.name):
        raise RecipeError(
            f"{recipe.where('run.name')}: {run.name!r} is not a safe run name: use letters, "
            "digits, '.', '_' and '-', starting with a letter or digit, at most 128 "
            "characters (it names the folder runs/<run.name>); set run.dir for a folder "
            "elsewhere")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in run.dir):
        raise RecipeError(f"{recipe.where('run.dir')}: {run.dir!r} holds control or "
                          "formatting characters; refused")
    path = Path(run.dir) if run.dir else Path("runs") / run.name
    if not allow_outside:
        roots = [Path.cwd().resolve()]
        if os.environ.get(RUNS_ROOT_VARIABLE):
            roots.append(Path(os.environ[RUNS_ROOT_VARIABLE]).resolve())
        resolved = path.resolve()
        if not any(resolved == root or root in resolved.parents for root in roots):
            raise RecipeError(
                f"{recipe.where('run.dir')}: {run.dir!r} is {str(resolved)!r}, outside "
                f"the current folder{' and $' + RUNS_ROOT_VARIABLE if len(roots) > 1 else ''}"
                f"; nothing was written. A recipe may not choose where dgm writes: run from "
                f"the folder that should hold the run, set {RUNS_ROOT_VARIABLE} to a folder "
                f"that may hold runs, or pass --allow-outside")
        if resolved in roots:
            raise RecipeError(f"{recipe.where('run.dir')}: {run.dir!r} is the current folder "
                              "(or the runs root) itself; give the run a folder of its own")
    return RunDir(path)


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: tuple[str, ...] = ()
                 ) -> list[tuple[str, ...]]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = (*prefix, key)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and vb is None and key not in b:
            vb = {}
        if isinstance(vb, dict) and va is None and key not in a:
            va = {}
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, path)
        elif va != vb:
            out.append(path)
    return out


def _holds(tables: dict[str, Any], path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(tables, dict) or part not in tables:
            return False
        tables = tables[part]
    return True


def _left_by_dgm(path: Path) -> bool:
    """A temporary file a killed or failed ``dgm run`` left while writing the recipe."""
    return path.name.startswith("recipe.toml.") and path.name.endswith(TEMPORARY_SUFFIX)


def prepare_run_dir(recipe: Recipe, run: RunDir, write: bool = True) -> None:
    """Create the run folder, or check that an existing one holds the same recipe.
    ``write=False`` only checks: the other processes of a multi-process run, which
    come after the main process has written the folder."""
    text = recipe.to_toml()
    if run.recipe_file.exists():
        saved = read_recipe(run.recipe_file)
        changed = [d for d in _differences(saved.tables, recipe.tables)
                   if not any(d[:n] in RESUMABLE_CHANGES for n in range(1, len(d) + 1))
                   and not (d in recipe.defaulted and not _holds(saved.tables, d))]
        if changed:
            keys = ", ".join(".".join(d) for d in changed)
            raise RunDirError(
                f"run folder {str(run.path)!r} holds a run of a different recipe (differs in: "
                f"{keys}). Nothing was changed. Resume it with the same settings, or start a "
                f"new run with run.dir=<new folder> or run.name=<new name>"
            )
    elif run.path.exists() and any(p.name != LOCK_NAME and not _left_by_dgm(p)
                                   for p in run.path.iterdir()):
        raise RunDirError(f"{str(run.path)!r} exists and is not a dgm run folder; choose "
                          "another run.dir")
    if write:
        run.path.mkdir(parents=True, exist_ok=True)
        for leftover in filter(_left_by_dgm, run.path.iterdir()):
            leftover.unlink(missing_ok=True)
        write_text_atomic(run.recipe_file, text)
