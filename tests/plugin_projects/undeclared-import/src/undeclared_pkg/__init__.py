"""Imports one undeclared distribution lazily, beside declared and type-only ones."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import torch

from dgm import hookimpl

from . import images

if TYPE_CHECKING:
    import pandas


def table(frame: pandas.DataFrame) -> str:
    """A lazy import counts: numpy is needed when this runs."""
    import numpy as np

    return json.dumps(np.asarray(frame).tolist()) + str(torch.zeros(1)) + str(hookimpl)


__all__ = ["images", "table"]
