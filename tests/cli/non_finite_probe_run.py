"""Started by torchrun from test_multiprocess.py: trains a family whose loss is NaN on
process 1 alone, on its third batch, and writes how many batches each process drew and
its trained weight to ``calls-RANK.json``."""

from __future__ import annotations

import json
import os
import sys
import warnings

import torch
from torch import nn

from dgm import hookimpl
from dgm.cli import main
from dgm.contract import Family, LogLikelihood
from dgm.testing import registered_plugin

NAN_ON_RANK, NAN_ON_CALL = "1", 3


class OneRankNaNFamily(Family):
    """One parameter; its loss is NaN on one process's third batch, finite elsewhere."""

    likelihood_kind = "exact"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        loss = (self.w * batch["x"]).pow(2).mean()
        if os.environ.get("RANK") == NAN_ON_RANK and self.calls == NAN_ON_CALL:
            return loss * float("nan"), {}
        return loss, {}

    def sample(self, n, generator=None, condition=None):
        return torch.zeros(n, 1, 8, 8)

    def log_likelihood(self, x, **settings):
        return LogLikelihood(torch.zeros(x.shape[0]), "exact", "test")


class OneRankNaNPlugin:
    def __init__(self) -> None:
        self.made: list[OneRankNaNFamily] = []

    @hookimpl
    def register_families(self, register):
        register("one-rank-nan", lambda ctx, **settings: self.made.append(OneRankNaNFamily())
                 or self.made[-1])


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # the digits-VAE recipe's unused network tables
    plugin = OneRankNaNPlugin()
    with registered_plugin(plugin, "probe"):
        code = main(["run", *sys.argv[1:], "family.name=probe:one-rank-nan"])
    trained = max(plugin.made, key=lambda family: family.calls)
    with open(f"calls-{os.environ.get('RANK', '0')}.json", "w") as f:
        json.dump({"calls": trained.calls, "w": trained.w.item()}, f)
    sys.exit(code)
