"""Where a benchmark ran: written into every results file."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """Platform, CPU count, library versions, torch threads and the UTC date."""
    import accelerate
    import diffusers

    return {"platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "accelerate": accelerate.__version__,
            "diffusers": diffusers.__version__, "torch_threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
