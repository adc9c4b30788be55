"""Started by torchrun from test_multiprocess.py: trains a family that records the
noise it draws in its loss, and writes the draws to ``noise-RANK.json``."""

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


class NoiseFamily(Family):
    """One parameter fitted to standard normal noise drawn from the global RNG, the way
    the diffusion, VAE, flow and GAN losses draw theirs."""

    likelihood_kind = "exact"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.draws: list[list[float]] = []

    def loss(self, batch):
        noise = torch.randn(4)
        self.draws.append(noise.tolist())
        return (self.w - noise.mean()).pow(2) + 0 * batch["x"].sum(), {}

    def sample(self, n, generator=None, condition=None):
        return torch.zeros(n, 1, 8, 8)

    def log_likelihood(self, x, **settings):
        return LogLikelihood(torch.zeros(x.shape[0]), "exact", "test")


class NoisePlugin:
    def __init__(self) -> None:
        self.made: list[NoiseFamily] = []

    @hookimpl
    def register_families(self, register):
        register("noise", lambda ctx, **settings: self.made.append(NoiseFamily())
                 or self.made[-1])


if __name__ == "__main__":
    warnings.simplefilter("ignore")  # the digits-VAE recipe's unused network tables
    plugin = NoisePlugin()
    with registered_plugin(plugin, "probe"):
        code = main(["run", *sys.argv[1:], "family.name=probe:noise"])
    rank = os.environ.get("RANK", "0")
    with open(f"noise-{rank}.json", "w") as f:
        json.dump(max(plugin.made, key=lambda family: len(family.draws)).draws, f)  # trained
    sys.exit(code)
