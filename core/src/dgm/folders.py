"""A folder of a user's files as a data split: listed recursively, labelled by top-level
sub-folder, and split at random with a fixed seed. Modality plugins read the files."""

from __future__ import annotations

import random
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from dgm.errors import DataError, RecipeWarning


@dataclass
class FolderSplit:
    """One split's files, with their class index (0 for files at the top level)."""

    root: Path
    files: list[Path]
    labels: list[int]
    classes: tuple[str, ...]


def folder_split(path: str, suffixes: Collection[str], split: str, val_fraction: float,
                 test_fraction: float, seed: int, what: str) -> FolderSplit:
    """The files under ``path`` whose suffix is in ``suffixes``, for ``split`` (train, val
    or test). ``what`` names the folder in errors, e.g. ``"image folder"``."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} {str(root)!r} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        kind = what.split()[0]
        raise DataError(f"{what} {str(root)!r} holds no {kind} files "
                        f"({', '.join(sorted(suffixes))})")
    parts = [p.relative_to(root).parts for p in files]
    classes = tuple(sorted({q[0] for q in parts if len(q) > 1}))
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    n_test, n_val = round(len(files) * test_fraction), round(len(files) * val_fraction)
    chosen = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
              "train": order[n_test + n_val:]}
    if split not in chosen:
        raise DataError(f"{what} {str(root)!r}: unknown split {split!r}; splits are "
                        f"{', '.join(chosen)}")
    indices = sorted(chosen[split])
    return FolderSplit(root, [files[i] for i in indices],
                       [classes.index(parts[i][0]) if len(parts[i]) > 1 else 0
                        for i in indices], classes)


SHOWN_BAD_FILES = 20
"""At most this many bad files are named in one message (then a count of the rest)."""


def report_bad_files(bad: list[tuple[Path, str]], skip: bool, what: str) -> None:
    """Every bad file a folder data set found in one pass, with why: one error that
    names them all (so a user fixes them in one go), or, with ``data.skip_bad``, one
    ``dgm: warning:`` that does. Nothing if there are none."""
    if not bad:
        return
    shown = "; ".join(f"{path} ({why})" for path, why in bad[:SHOWN_BAD_FILES])
    more = f"; and {len(bad) - SHOWN_BAD_FILES} more" if len(bad) > SHOWN_BAD_FILES else ""
    if not skip:
        raise DataError(f"{what}: {len(bad)} bad file(s): {shown}{more}. Remove or fix "
                        "them, or set data.skip_bad = true to skip such files with a warning")
    warnings.warn(f"{what}: skipped {len(bad)} bad file(s): {shown}{more}", RecipeWarning,
                  stacklevel=2)
