"""Sampling at a size other than the training size (textures at 1024x768 from 64x64
crops): parsing ``WIDTHxHEIGHT`` and checking that a network can make that size.

A fully convolutional network declares the ``fully-convolutional`` capability (see
:mod:`dgm.capabilities`) and its ``size_multiple``: it works at any height and width
divisible by that number. A network without it works only at the data's own size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from dgm.capabilities import FULLY_CONVOLUTIONAL, has

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x768"`` (width x height, as image sizes are written) to ``(768, 1024)``,
    i.e. (height, width), the order of tensor dimensions."""
    match = SIZE_PATTERN.match(text)
    if not match:
        raise ValueError(f"size {text!r} should be WIDTHxHEIGHT in pixels, e.g. 1024x768")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 1 or height < 1:
        raise ValueError(f"size {text!r}: width and height must be at least 1")
    return height, width


def format_size(size: Sequence[int]) -> str:
    """``(height, width)`` as ``"WIDTHxHEIGHT"``."""
    return f"{size[-1]}x{size[-2]}"


def sample_shape(data_shape: Sequence[int], size: Sequence[int] | None, network: nn.Module,
                 role: str) -> tuple[int, ...]:
    """The per-example shape of samples at ``size`` = (height, width): the data's shape
    with its last two dimensions replaced. Raises ``ValueError`` naming the network when
    it cannot make that size, with the nearest sizes it can make."""
    data_shape = tuple(data_shape)
    if size is None or tuple(size) == data_shape[-2:]:
        return data_shape
    if len(size) != 2 or len(data_shape) < 3:
        raise ValueError(f"size must be (height, width) for 2-D data; got {list(size)} for "
                         f"data shaped {data_shape}")
    height, width = (int(s) for s in size)
    name = type(network).__name__
    if not has(network, FULLY_CONVOLUTIONAL):
        raise ValueError(f"the {role} network ({name}) makes only the training size "
                         f"{format_size(data_shape[-2:])}, not {width}x{height}; a fully "
                         "convolutional network (capability 'fully-convolutional') makes "
                         "any size")
    multiple = network.size_multiple
    if height < 1 or width < 1 or height % multiple or width % multiple:
        def near(v: int) -> int:
            return max(multiple, int(v / multiple + 0.5) * multiple)  # halves round up

        raise ValueError(f"the {role} network ({name}) makes sizes whose width and height "
                         f"are multiples of {multiple}; {width}x{height} is not (nearest: "
                         f"{near(width)}x{near(height)})")
    return (*data_shape[:-2], height, width)
