"""``dgm plugin new NAME``: write a complete, installable plugin project.

The project holds a working modality (1-D signals shaped ``(channels, length)``: CSV
codec, line-plot previews, a toy data set, networks for the VAE, flow and diffusion
families), a VAE and a diffusion recipe, tests that run dgm's conformance kit, and a
README. It installs
with ``dgm install -e dgm-NAME`` and its tests pass with no edits; a plugin author then
replaces the toy parts with their own.
"""

from __future__ import annotations

import re
from pathlib import Path

from dgm.errors import DgmError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

PYPROJECT = '''\
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "dgm-__NAME__"
version = "0.1.0"
description = "A dgm plugin: the __NAME__ modality"
readme = "README.md"
requires-python = ">=3.11"
# What src/ imports; add what your own code imports, so pip installs it with the plugin.
dependencies = ["dgm-core>=0.2", "torch>=2.4", "numpy>=1.26", "matplotlib>=3.8"]

[project.optional-dependencies]
# The tests run dgm's conformance kit (dgm.testing), which needs pytest.
test = ["dgm-core[testing]>=0.2", "pytest>=8"]

# The entry point makes dgm find the plugin; its name is the plugin's namespace.
[project.entry-points.dgm]
__NAME__ = "dgm___NAME__.plugin"

[tool.hatch.build.targets.wheel]
packages = ["src/dgm___NAME__"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

PLUGIN = '''\
"""The __NAME__ plugin for dgm: a modality for 1-D signals shaped (channels, length),
a toy data set, networks for the VAE, flow and diffusion families (diffusion uses
core:conv1d-denoiser), and two recipes.

dgm finds this module through the entry point ``__NAME__ = "dgm___NAME__.plugin"`` (group
``dgm``) in pyproject.toml, so what it registers as ``"sines"`` is ``"__NAME__:sines"``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dgm import hookimpl
from dgm.contract import DataInfo, Modality, TensorData

dgm_hook_api = 2
"""The dgm hook API this plugin is written against (dgm.hookspecs.HOOK_API_VERSION)."""

RECIPES = Path(__file__).parent / "recipes"


# -- the modality: files, previews and defaults ------------------------------------------


def read_signal(path: Path) -> Tensor:
    """A CSV file, one row per channel, to a (C, L) float tensor."""
    return torch.from_numpy(np.loadtxt(path, delimiter=",", ndmin=2)).float()


def write_signal(x: Tensor, path: Path) -> None:
    """A (C, L) tensor to a CSV file, one row per channel."""
    np.savetxt(path, x.detach().cpu().reshape(x.shape[0], -1).numpy(), delimiter=",",
               fmt="%.6f")


def preview(batch: Tensor, path: Path) -> None:
    """Plot the first channel of up to 16 signals into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for x in batch[:16].detach().cpu():
        ax.plot(x[0].numpy(), lw=0.8)
    fig.savefig(path)
    plt.close(fig)


def signal_modality() -> Modality:
    """Signals in [-1, 1]: CSV files, line plots, and a default network per role."""
    return Modality(
        name="__NAME__:signal", read=read_signal, write=write_signal, preview=preview,
        file_suffix=".csv",
        networks={"encoder": "__NAME__:mlp-encoder", "decoder": "__NAME__:mlp-decoder",
                  "coupling": "__NAME__:conv-coupling", "denoiser": "core:conv1d-denoiser"},
        likelihood="core:gaussian", metrics=["core:mmd"])


# -- a data set ---------------------------------------------------------------------------


def sines(split: str, length: int = 32, size: int = 512) -> TensorData:
    """Noisy sine waves of random frequency and phase; each split has its own seed."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    t = torch.linspace(0, 1, length)
    freq = 1 + 3 * torch.rand(size, 1, generator=g)
    phase = 2 * math.pi * torch.rand(size, 1, generator=g)
    x = 0.8 * torch.sin(2 * math.pi * freq * t + phase)
    x = (x + 0.05 * torch.randn(size, length, generator=g)).clamp(-1, 1)
    return TensorData(x.unsqueeze(1), None, DataInfo("__NAME__:signal", (1, length)))


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
    register("signal", signal_modality, "1-D signals (C, L) in [-1, 1], CSV files")


@hookimpl
def register_datasets(register):
    register("sines", sines, "Noisy sine waves of random frequency and phase")


@hookimpl
def register_networks(register):
    register("mlp-encoder", MLPEncoder, "MLP encoder for (C, L) signals")
    register("mlp-decoder", MLPDecoder, "MLP decoder for (C, L) signals")
    register("conv-coupling", ConvCoupling, "1-D conv shift/log-scale net for flows")


@hookimpl
def register_recipes(register):
    for path in sorted(RECIPES.glob("*.toml")):
        register(path.stem, path, "recipe shipped with dgm-__NAME__")
'''

RECIPE = '''\
# A VAE on the toy sine waves: `dgm run __NAME__:__NAME__-vae`
[run]
name = "__NAME__-vae"
description = "VAE on the __NAME__ plugin's noisy sine waves"
seed = 0

[data]
name = "__NAME__:sines"
length = 32
batch_size = 64

[family]
name = "core:vae"
latent_dim = 4

[train]
steps = 300
lr = 2e-3
log_every = 50
checkpoint_every = 300

[sample]
n = 16

[evaluate]
metric_samples = 100

[evaluate.likelihood]
k = 20
'''

DIFFUSION_RECIPE = '''\
# A diffusion model on the toy sine waves: `dgm run __NAME__:__NAME__-diffusion`.
# The denoiser is the modality's default, core:conv1d-denoiser (for (C, L) signals);
# a [networks.denoiser] table without a name gives it settings.
[run]
name = "__NAME__-diffusion"
description = "Diffusion on the __NAME__ plugin's noisy sine waves"
seed = 0

[data]
name = "__NAME__:sines"
length = 32
batch_size = 64

[family]
name = "core:diffusion"
timesteps = 200
sampling_steps = 20

[networks.denoiser]
hidden = 32
blocks = 3

[train]
steps = 300
lr = 2e-3
log_every = 50
checkpoint_every = 300

[sample]
n = 16

[evaluate]
metric_samples = 100

[evaluate.likelihood]
timesteps = 20
'''

CONFTEST = '''\
# Makes dgm's test fixtures (dgm_host, dgm_plugin) available to these tests.
pytest_plugins = ["dgm.testing"]
'''

TESTS = '''\
"""The __NAME__ plugin passes dgm's conformance kit, and ships its recipes."""

from dgm.testing import ModalityConformance


class TestSignalConformance(ModalityConformance):
    modality = "__NAME__:signal"
    dataset = "__NAME__:sines"
    dataset_settings = {"length": 32, "size": 64}
    families = ["core:vae", "core:flow", "core:diffusion"]
    recipe_overrides = {"core:diffusion": {"networks": {"denoiser": {"hidden": 32}}}}


def test_the_plugin_ships_its_recipes(dgm_host):
    names = {entry.name for entry in dgm_host.registry.entries("recipes")}
    assert {"__NAME__:__NAME__-vae", "__NAME__:__NAME__-diffusion"} <= names
'''

README = '''\
# dgm-__NAME__

A [dgm](https://github.com/) plugin: the `__NAME__:signal` modality (1-D signals shaped
(channels, length), CSV files, line-plot previews), the `__NAME__:sines` toy data set,
networks for the VAE, flow and diffusion families (diffusion uses dgm's
`core:conv1d-denoiser`), and the recipes `__NAME__:__NAME__-vae` and
`__NAME__:__NAME__-diffusion`.

```
dgm install -e .                  # into dgm's environment, editable
dgm plugins                       # __NAME__ is listed with what it registers
python -m pytest                  # the conformance kit (use dgm's python, e.g.
                                  # path/to/dgm/.venv/bin/python -m pytest)
dgm run __NAME__:__NAME__-vae     # train, sample and evaluate a recipe
dgm run __NAME__:__NAME__-diffusion
dgm show core:conv1d-denoiser     # the settings a [networks.denoiser] table may give
```

Replace the toy parts in `src/dgm___NAME__/plugin.py` with your own: your data set,
codec and networks. Publish with `python -m build` and `twine upload dist/*`; users
then run `dgm install dgm-__NAME__`.
'''

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "src/dgm___NAME__/__init__.py": '"""The __NAME__ plugin for dgm."""\n',
    "src/dgm___NAME__/plugin.py": PLUGIN,
    "src/dgm___NAME__/recipes/__NAME__-vae.toml": RECIPE,
    "src/dgm___NAME__/recipes/__NAME__-diffusion.toml": DIFFUSION_RECIPE,
    "tests/conftest.py": CONFTEST,
    "tests/test___NAME__.py": TESTS,
}


def new_plugin(name: str, parent: Path | str = ".") -> Path:
    """Write the project ``dgm-NAME`` under ``parent`` and return its folder."""
    if not NAME_PATTERN.match(name) or name == "core":
        raise DgmError(f"plugin name {name!r}: use lower-case letters, digits and '_', "
                       "starting with a letter (it becomes the namespace NAME:... and the "
                       "package dgm_NAME); 'core' is taken")
    root = Path(parent) / f"dgm-{name}"
    if root.exists():
        raise DgmError(f"{str(root)!r} already exists; choose another name or --dir")
    for relative, text in FILES.items():
        path = root / relative.replace("__NAME__", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("__NAME__", name))
    return root
