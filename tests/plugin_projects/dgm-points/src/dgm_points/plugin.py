"""The points plugin for dgm: 2-D point clouds shaped (2, points) (x and y rows), a
data set of noisy rings, networks for the VAE, flow and diffusion families, recipes.

dgm finds this module through the entry point ``points = "dgm_points.plugin"`` (group
``dgm``) in pyproject.toml, so what it registers as ``"sines"`` is ``"points:sines"``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dgm import hookimpl
from dgm.contract import DataInfo, Modality, TensorData

dgm_hook_api = 1
"""The dgm hook API this plugin is written against (dgm.hookspecs.HOOK_API_VERSION)."""

RECIPES = Path(__file__).parent / "recipes"


# -- the modality: files, previews and defaults ------------------------------------------


def read_cloud(path: Path) -> Tensor:
    """A CSV file of "x,y" rows to a (2, N) float tensor."""
    return torch.from_numpy(np.loadtxt(path, delimiter=",", ndmin=2)).float().T.contiguous()


def write_cloud(x: Tensor, path: Path) -> None:
    """A (2, N) tensor to a CSV file of "x,y" rows."""
    np.savetxt(path, x.detach().cpu().T.numpy(), delimiter=",", fmt="%.6f")


def preview(batch: Tensor, path: Path) -> None:
    """Scatter plots of up to 16 clouds in a 4x4 grid, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 4, figsize=(6, 6))
    clouds = batch[:16].detach().cpu()
    for i, ax in enumerate(axes.flat):
        if i < len(clouds):
            ax.scatter(clouds[i, 0].numpy(), clouds[i, 1].numpy(), s=4)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xticks=[], yticks=[])
    fig.savefig(path)
    plt.close(fig)


def cloud_modality() -> Modality:
    """Point clouds in [-1, 1]^2: CSV files, scatter plots, a default network per role."""
    return Modality(
        name="points:cloud", read=read_cloud, write=write_cloud, preview=preview,
        file_suffix=".csv",
        networks={"encoder": "points:mlp-encoder", "decoder": "points:mlp-decoder",
                  "coupling": "points:conv-coupling", "denoiser": "core:mlp-denoiser"},
        likelihood="core:gaussian", metrics=["core:mmd"])


# -- a data set ---------------------------------------------------------------------------


def rings(split: str, points: int = 16, size: int = 512, noise: float = 0.03
          ) -> TensorData:
    """Clouds of ``points`` points on a noisy ring of random centre and radius, in angle
    order; each split has its own seed."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    centre = 0.4 * (2 * torch.rand(size, 2, 1, generator=g) - 1)
    radius = 0.2 + 0.3 * torch.rand(size, 1, 1, generator=g)
    angle = torch.linspace(0, 2 * math.pi, points + 1)[:points]
    angle = angle + 2 * math.pi * torch.rand(size, 1, generator=g)
    ring = torch.stack([angle.cos(), angle.sin()], 1)  # (size, 2, points)
    x = centre + radius * ring + noise * torch.randn(size, 2, points, generator=g)
    return TensorData(x.clamp(-1, 1), None, DataInfo("points:cloud", (2, points)))


# -- networks: each family asks for one by role, with the arguments it decides --------


class MLPEncoder(nn.Module):
    """VAE ``encoder``: (B, C, L) -> (B, 2 * latent_dim), the mean and log-variance."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(data_shape), hidden),
                                 nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """VAE ``decoder``: (B, latent_dim) -> (B, param_channels * C, L), the parameters of
    the likelihood (a Gaussian has two per element: mean and log-scale)."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int,
                 param_channels: int = 1, hidden: int = 128):
        super().__init__()
        self.shape = (param_channels * data_shape[0], *data_shape[1:])
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, math.prod(self.shape)))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.shape)


class ConvCoupling(nn.Module):
    """Flow ``coupling``: (B, in_channels, L) -> (B, out_channels, L), a shift and a
    log-scale; the last layer starts at zero so each coupling starts as the identity."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32):
        super().__init__()
        last = nn.Conv1d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Conv1d(in_channels, hidden, 3, padding=1), nn.SiLU(),
                                 last)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# -- the hooks: dgm calls each once, with a register(name, obj, description) callback --


@hookimpl
def register_modalities(register):
    register("cloud", cloud_modality, "2-D point clouds (2, N) in [-1, 1], CSV files")


@hookimpl
def register_datasets(register):
    register("rings", rings, "Point clouds on noisy rings of random centre and radius")


@hookimpl
def register_networks(register):
    register("mlp-encoder", MLPEncoder, "MLP encoder for (2, N) clouds")
    register("mlp-decoder", MLPDecoder, "MLP decoder for (2, N) clouds")
    register("conv-coupling", ConvCoupling, "1-D conv shift/log-scale net for flows")


@hookimpl
def register_recipes(register):
    for path in sorted(RECIPES.glob("*.toml")):
        register(path.stem, path, "recipe shipped with dgm-points")
