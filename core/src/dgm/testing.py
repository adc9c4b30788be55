"""The conformance kit: checks a plugin author runs in their own pytest suite.

A modality plugin's whole test file can be::

    from dgm.testing import ModalityConformance

    class TestSignals(ModalityConformance):
        modality = "signals:signal"
        dataset = "signals:sines"
        dataset_settings = {"length": 32}
        families = ["core:vae", "core:flow", "core:diffusion"]

pytest collects the inherited ``test_*`` methods: the plugin loads without errors, data
splits describe their examples, codec round trip, representation inverse, preview, the
shapes of the default networks, likelihood normalisation, seed determinism, and for each
family a few training steps through a real recipe with save/load of the trained weights.
Every failure message names the entry and what went wrong.

Fixtures (``pytest_plugins = ["dgm.testing"]`` in a ``conftest.py`` makes them
available): ``dgm_host`` (a freshly loaded plugin host) and ``dgm_plugin`` (registers a
plugin object for one test and removes it after). Outside pytest,
:func:`registered_plugin` does the same in a ``with`` block. This module imports pytest:
it is for test suites only.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from dgm import plugins
from dgm.plugins import PluginHost, get_host

# -------------------------------------------------------------------------------------
# Registering a plugin for a test
# -------------------------------------------------------------------------------------


@contextmanager
def registered_plugin(plugin: object, name: str,
                      host: PluginHost | None = None) -> Iterator[PluginHost]:
    """Register ``plugin`` under ``name`` for the block; yields the host. Raises
    ``pluggy.PluginValidationError`` for a misspelt hook (``pm.check_pending()``) and
    ``AssertionError`` with the host's message when the plugin fails to register."""
    host = host or get_host()
    host.add_plugin(plugin, name, distribution="(test)", version="0")
    try:
        info = host.plugins.get(name)
        if info is None or not info.loaded:
            raise AssertionError(f"plugin {name!r} could not be registered: "
                                 f"{info.error if info else 'unknown error'}")
        host.pm.check_pending()
        yield host
    finally:
        host.remove_plugin(name)


@pytest.fixture
def dgm_host() -> Iterator[PluginHost]:
    """A freshly loaded process-wide plugin host (every installed plugin, or those
    ``DGM_PLUGINS`` selects), checked for misspelt hooks; forgotten after the test."""
    plugins.reset()
    host = plugins.get_host()
    host.pm.check_pending()
    yield host
    plugins.reset()


@pytest.fixture
def dgm_plugin() -> Iterator[Callable[[object, str], PluginHost]]:
    """``dgm_plugin(plugin, name)`` registers ``plugin`` in the process-wide host for
    this test; it and its entries are removed afterwards."""
    with ExitStack() as stack:
        yield lambda plugin, name: stack.enter_context(registered_plugin(plugin, name))


# -------------------------------------------------------------------------------------
# Tiny recipes
# -------------------------------------------------------------------------------------

TINY_FAMILY_SETTINGS: dict[str, dict[str, Any]] = {
    "core:vae": {"family": {"latent_dim": 4}, "evaluate": {"likelihood": {"k": 2}}},
    "core:flow": {"family": {"scales": 1, "steps_per_scale": 2},
                  "evaluate": {"likelihood": {"k": 1}}},
    "core:diffusion": {"family": {"timesteps": 20, "sampling_steps": 2},
                       "evaluate": {"likelihood": {"timesteps": 2}}},
    "core:gan": {"family": {"latent_dim": 4}},
    "core:autoregressive": {},
}
"""Recipe tables that make each core family small and quick to evaluate."""


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, table by table (a copy)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_recipe(dataset: str, family: str, run_dir: Path | str,
                dataset_settings: dict[str, Any] | None = None, steps: int = 3,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tables of a recipe that trains ``family`` on ``dataset`` for ``steps`` steps,
    samples 4 examples and evaluates the likelihood on 8 (no sample metrics)."""
    tables = {
        "run": {"name": Path(run_dir).name, "seed": 0, "dir": str(run_dir)},
        "data": {"name": dataset, "batch_size": 8, **(dataset_settings or {})},
        "family": {"name": family},
        "train": {"steps": steps, "lr": 1e-3, "log_every": 1, "checkpoint_every": steps,
                  "progress": False},
        "sample": {"n": 4, "seed": 1},
        "evaluate": {"max_examples": 8, "batch_size": 8, "metrics": []},
    }
    return merge(merge(tables, TINY_FAMILY_SETTINGS.get(family, {})), extra or {})


def write_recipe(tables: dict[str, Any], path: Path) -> Path:
    """Write recipe tables as TOML."""
    import tomli_w

    path.write_text(tomli_w.dumps(tables))
    return path


# -------------------------------------------------------------------------------------
# The modality conformance class
# -------------------------------------------------------------------------------------


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference (inf when the shapes differ)."""
    if a.shape != b.shape:
        return math.inf
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


class ModalityConformance:
    """Subclass in a test file and set the class attributes; pytest runs the checks.

    ``modality``, ``dataset``: full registered names. ``dataset_settings``: the
    ``[data]`` settings of a small data set. ``families``: the families the modality
    supports; each trains for ``train_steps`` steps through a recipe built by
    :func:`tiny_recipe`, merged with ``recipe_overrides[family]`` (e.g. small network
    settings: ``{"core:diffusion": {"networks": {"denoiser": {"hidden": 32}}}}``).
    ``plugin``: a plugin module to register for the tests when it is not installed
    (``plugin_name``, default the modality's namespace). ``codec_atol``: how far
    ``read(write(y))`` may be from ``representation.forward(y)`` (file quantisation).
    ``inverse_atol``: how far ``forward(inverse(x))`` may be from ``x``; ``None`` for
    a lossy inverse (then only shapes and finite values are checked).
    """

    modality: ClassVar[str] = ""
    dataset: ClassVar[str] = ""
    dataset_settings: ClassVar[dict[str, Any]] = {}
    families: ClassVar[Sequence[str]] = ()
    recipe_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    plugin: ClassVar[object | None] = None
    plugin_name: ClassVar[str | None] = None
    codec_atol: ClassVar[float] = 1e-2
    inverse_atol: ClassVar[float | None] = 1e-4
    train_steps: ClassVar[int] = 3
    splits: ClassVar[Sequence[str]] = ("train", "val", "test")

    # -- fixtures ------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "family" in metafunc.fixturenames:
            metafunc.parametrize("family", list(self.families))

    @property
    def namespace(self) -> str:
        return self.plugin_name or self.modality.split(":", 1)[0]

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _conformance_host(cls) -> Iterator[PluginHost]:
        host = get_host()
        namespace = cls.plugin_name or cls.modality.split(":", 1)[0]
        if cls.plugin is not None and namespace not in host.plugins:
            with registered_plugin(cls.plugin, namespace, host):
                yield host
        else:
            yield host

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> dict[str, Any]:
        """Each split's data set."""
        from dgm.assembly import build_data
        from dgm.recipes import Recipe

        recipe = Recipe({"data": {"name": cls.dataset, **cls.dataset_settings}},
                        source=f"{cls.__name__}.dataset_settings")
        return {split: build_data(recipe, get_host().registry, split)
                for split in cls.splits}

    @pytest.fixture(scope="class")
    @classmethod
    def examples(cls, data: dict[str, Any]) -> torch.Tensor:
        """Up to 8 training examples, stacked."""
        train = data[cls.splits[0]]
        return torch.stack([train[i]["x"] for i in range(min(8, len(train)))])

    @pytest.fixture(scope="class")
    @classmethod
    def built_modality(cls, data: dict[str, Any]) -> Any:
        from dgm.assembly import build_modality

        return build_modality(data[cls.splits[0]].info, get_host().registry)

    def _context(self, data: dict[str, Any], family: str = "",
                 tables: dict[str, Any] | None = None) -> Any:
        from dgm.assembly import BuildContext, build_modality
        from dgm.recipes import Recipe

        info = data[self.splits[0]].info
        registry = get_host().registry
        recipe = Recipe(tables or {}, source=f"{type(self).__name__} ({family or 'networks'})")
        return BuildContext(recipe, registry, info, build_modality(info, registry))

    def _recipe(self, family: str, run_dir: Path, modality: Any) -> dict[str, Any]:
        """The tiny recipe for ``family``; a ``[networks.<role>]`` override without a
        ``name`` gets the modality's default network for that role."""
        tables = tiny_recipe(self.dataset, family, run_dir, self.dataset_settings,
                             self.train_steps, self.recipe_overrides.get(family))
        for role, table in tables.get("networks", {}).items():
            if "name" not in table and role in modality.networks:
                table["name"] = modality.networks[role]
        return tables

    # -- checks ----------------------------------------------------------------------------

    def test_plugin_loads_without_errors(self) -> None:
        host = get_host()
        info = host.plugins.get(self.namespace)
        assert info is not None, (f"plugin {self.namespace!r} is not loaded; installed "
                                  f"plugins: {', '.join(host.plugins)}")
        assert info.loaded and not info.error, f"plugin {self.namespace!r}: {info.error}"
        for kind, name in (("modalities", self.modality), ("datasets", self.dataset)):
            entry = host.registry.get(kind, name)
            assert entry.name == name, f"{name!r} resolves to {entry.name!r}; use full names"

    def test_data_splits_describe_their_examples(self, data: dict[str, Any]) -> None:
        for split, source in data.items():
            info = source.info
            where = f"{self.dataset} (split {split!r})"
            assert info.modality == self.modality, (
                f"{where}: DataInfo.modality is {info.modality!r}, expected {self.modality!r}")
            json.dumps(info.source)  # must be JSON-serialisable: it is saved with runs
            for i in range(min(4, len(source))):
                item = source[i]
                assert isinstance(item, dict) and "x" in item, (
                    f"{where}: item {i} should be a dict with 'x', got {type(item).__name__}")
                x = item["x"]
                assert tuple(x.shape) == tuple(info.shape), (
                    f"{where}: item {i} has shape {tuple(x.shape)}, DataInfo.shape says "
                    f"{tuple(info.shape)}")
                assert x.is_floating_point() or info.levels, (
                    f"{where}: continuous data should be a float tensor, got {x.dtype}")
                assert torch.isfinite(x.float()).all(), f"{where}: item {i} is not finite"
                lo, hi = info.value_range
                assert lo - 1e-5 <= float(x.min()) and float(x.max()) <= hi + 1e-5, (
                    f"{where}: item {i} lies outside DataInfo.value_range {info.value_range}")
                if info.grid is not None:
                    assert info.grid.contains(x.float()), (
                        f"{where}: item {i} has values off {info.grid.describe()} "
                        "(DataInfo.levels on DataInfo.value_range)")

    def test_codec_round_trip(self, examples: torch.Tensor, built_modality: Any,
                              tmp_path: Path) -> None:
        m = built_modality
        for i, x in enumerate(examples[:4]):
            decoded = m.representation.inverse(x)
            path = tmp_path / f"example-{i}{m.file_suffix}"
            m.write(decoded, path)
            assert path.is_file(), f"{self.modality}: write() made no file at {path}"
            back = m.read(path)
            expected = m.representation.forward(decoded)
            diff = _close(back, expected)
            assert diff <= self.codec_atol, (
                f"{self.modality}: read(write(y)) differs from representation.forward(y) "
                f"by {diff:.3g} (codec_atol {self.codec_atol}); shapes "
                f"{tuple(back.shape)} and {tuple(expected.shape)}")

    def test_representation_inverse(self, examples: torch.Tensor,
                                    built_modality: Any) -> None:
        rep = built_modality.representation
        json.dumps(rep.metadata)
        decoded = rep.inverse(examples)
        assert torch.isfinite(decoded).all(), (
            f"{self.modality}: representation {rep.name!r} inverse gives non-finite values")
        again = rep.forward(decoded)
        assert again.shape == examples.shape, (
            f"{self.modality}: forward(inverse(x)) has shape {tuple(again.shape)}, x has "
            f"{tuple(examples.shape)}")
        if self.inverse_atol is not None:
            diff = _close(again, examples)
            assert diff <= self.inverse_atol, (
                f"{self.modality}: forward(inverse(x)) differs from x by {diff:.3g} "
                f"(inverse_atol {self.inverse_atol}; set it to None for a lossy inverse)")

    def test_preview_is_written(self, examples: torch.Tensor, built_modality: Any,
                                tmp_path: Path) -> None:
        path = tmp_path / "preview.png"
        built_modality.preview(examples, path)
        assert path.is_file() and path.stat().st_size > 0, (
            f"{self.modality}: preview() wrote nothing at {path}")

    def test_default_networks_have_the_shapes_families_expect(
            self, data: dict[str, Any], examples: torch.Tensor) -> None:
        """Every role of every family the modality claims (``Family.roles``), built as
        the family builds it, returns what the role declares and passes the role's
        checks: an autoregressive network is causal in raster order (gradient test), a
        coupling network starts at zero (an identity coupling). Where the data carries
        a condition, the networks that take it as an argument are checked with one too."""
        from dgm.assembly import family_roles

        registry = get_host().registry
        done: set[str] = set()
        for family in self.families:
            tables = copy.deepcopy(self.recipe_overrides.get(family, {}))
            ctx = self._context(data, family, {"networks": tables.get("networks", {})})
            for role in family_roles(registry.get("families", family)):
                if role.name in done:
                    continue
                done.add(role.name)
                with torch.no_grad() if role.name != "autoregressive" else ExitStack():
                    check_role(self.modality, ctx, role, examples)
                    if ctx.info.condition.kind != "none" and role.conditioning == "argument":
                        check_role(self.modality, ctx, role, examples, condition_dim=4)

    def test_likelihood_is_normalised(self, data: dict[str, Any]) -> None:
        ctx = self._context(data)
        likelihood = ctx.likelihood()
        name = ctx.modality.likelihood
        grid = data[self.splits[0]].info.grid
        g = torch.Generator().manual_seed(0)
        params = 0.5 * torch.randn(1, likelihood.param_channels, 1, generator=g)
        if likelihood.discrete:
            if grid is None:
                pytest.skip(f"{name} is discrete but the data gives no levels")
            values = grid.values()
            total = likelihood.log_prob(params.expand(grid.levels, -1, -1),
                                        values.view(-1, 1, 1)).exp().sum()
        else:
            points = torch.linspace(-30, 30, 60001)
            density = likelihood.log_prob(params.expand(len(points), -1, -1),
                                          points.view(-1, 1, 1)).exp()
            total = torch.trapezoid(density, points)
        assert abs(float(total) - 1) < 1e-2, (
            f"{self.modality}: likelihood {name} sums to {float(total):.4f} over one "
            "element's values, not 1")

    def test_seed_determinism(self, data: dict[str, Any], built_modality: Any,
                              tmp_path: Path) -> None:
        from accelerate.utils import set_seed

        from dgm.assembly import build_data, build_family
        from dgm.recipes import Recipe

        registry = get_host().registry
        first = data[self.splits[0]]
        again = build_data(Recipe({"data": {"name": self.dataset, **self.dataset_settings}}),
                           registry, self.splits[0])
        for i in range(min(4, len(first))):
            assert torch.equal(first[i]["x"], again[i]["x"]), (
                f"{self.dataset}: building the data set twice gives different item {i}; "
                "seed any randomness (torch.Generator().manual_seed(...))")
        for family in self.families:
            recipe = Recipe(self._recipe(family, tmp_path / "run", built_modality),
                            source=family)
            draws = []
            for _ in range(2):
                set_seed(0)
                model = build_family(recipe, registry, first.info).eval()
                draws.append(model.sample(2, generator=torch.Generator().manual_seed(3)))
            assert torch.equal(draws[0], draws[1]), (
                f"{self.modality} with {family}: two models built under seed 0 give "
                "different samples for the same generator seed")

    def test_family_trains_saves_and_loads(self, family: str, built_modality: Any,
                                           tmp_path: Path) -> None:
        from dgm.loaded_run import LoadedRun
        from dgm.workflows import run_recipe

        tables = self._recipe(family, tmp_path / "run", built_modality)
        path = write_recipe(tables, tmp_path / "recipe.toml")
        run = run_recipe(str(path), [], echo=lambda *_: None, allow_outside=True)
        records = [r for r in run.read_metrics() if "loss" in r]
        assert records, f"{self.modality} with {family}: no loss was logged"
        assert all(math.isfinite(r["loss"]) for r in records), (
            f"{self.modality} with {family}: non-finite loss {[r['loss'] for r in records]}")
        files = sorted(run.samples_dir.glob("sample-*"))
        assert len(files) == tables["sample"]["n"], (
            f"{self.modality} with {family}: expected {tables['sample']['n']} sample files "
            f"in {run.samples_dir}, found {len(files)}")
        draws = []
        for _ in range(2):  # the saved weights load, and sample alike
            model = LoadedRun.open(run.path).family
            draws.append(model.sample(2, generator=torch.Generator().manual_seed(5)).cpu())
            assert tuple(draws[-1].shape[1:]) == tuple(run.read_data_info().shape), (
                f"{self.modality} with {family}: samples have shape "
                f"{tuple(draws[-1].shape)}")
        assert torch.equal(draws[0], draws[1]), (
            f"{self.modality} with {family}: the saved weights give different samples "
            "each time they are loaded (is a buffer missing from the state dict?)")


def check_role(modality: str, ctx: Any, role: Any, examples: torch.Tensor,
                condition_dim: int = 0) -> None:
    """Build the modality's network for ``role`` with small structural arguments and
    check what it returns (and, for some roles, how)."""
    from dgm.capabilities import SPATIAL_LATENTS, has
    from dgm.contract import CONDITION_DIM

    shape = tuple(examples.shape[1:])
    b, c = examples.shape[0], shape[0]
    k = ctx.likelihood().param_channels
    values = {"data_shape": shape, "latent_dim": 4, "param_channels": k,
              "in_channels": c, "out_channels": 2 * c}
    structural = {a: values[a] for a in role.arguments}
    extra = {CONDITION_DIM: condition_dim} if condition_dim else {}
    condition = (torch.randn(b, condition_dim),) if condition_dim else ()
    net = ctx.network(role, **structural, **extra)
    name = f"{modality}: {role.name} network {type(net).__name__}" + (
        f" (condition_dim={condition_dim})" if condition_dim else "")
    if role.name == "encoder":
        out = net(examples)
        want = (b, 8)
    elif role.name == "decoder":
        out = net(torch.randn(b, 4))
        want = (b, k * c, *shape[1:])
    elif role.name == "coupling":
        out = net(examples)
        want = (b, 2 * c, *shape[1:])
        assert float(out.detach().abs().max()) == 0.0, (
            f"{name} should start at zero output, so that each coupling starts as the "
            f"identity; its output at initialisation reaches {float(out.detach().abs().max()):.3g} "
            "(initialise its last layer to zero)")
    elif role.name == "denoiser":
        out = net(examples, torch.randint(0, 10, (b,)), *condition or (None,))
        want = tuple(examples.shape)
    elif role.name == "generator":
        z = torch.randn(b, 4)
        if has(net, SPATIAL_LATENTS):
            z = torch.randn(b, *net.latent_shape(shape))
        out = net(z)
        want = (b, *shape)
    elif role.name == "critic":
        out = net(examples).reshape(-1)
        want = (b,)
    elif role.name == "autoregressive":
        check_causal(name, net, examples, k, condition)
        return
    else:
        return
    assert tuple(out.shape) == want, (
        f"{name} should give {role.returns} = {want}, gave {tuple(out.shape)}")


def check_causal(name: str, net: Any, examples: torch.Tensor, k: int,
                  condition: tuple[torch.Tensor, ...]) -> None:
    """The params of an element may depend only on the elements before it in raster
    order (positions in order, then channels within a position): the gradient of a few
    elements' params with respect to the input is zero at and after the element."""
    x = examples[:1].clone().float().requires_grad_(True)
    c = x.shape[1]
    spatial = x.shape[2:]
    out = net(x, *(t[:1] for t in condition))
    want = (1, k * c, *spatial)
    assert tuple(out.shape) == want, f"{name} should give {want}, gave {tuple(out.shape)}"
    order = torch.arange(x[0].numel()).reshape(*spatial, c).movedim(-1, 0)  # raster rank
    positions = [0, order.numel() // 2, order.numel() - 1]
    for rank in positions:
        channel, *where = [int(i) for i in (order == rank).nonzero()[0]]
        element = (0, slice(channel, None, c), *where)  # its k params, laid out "(p c)"
        (grad,) = torch.autograd.grad(out[element].sum(), x, retain_graph=True)
        leaking = (grad[0].abs() > 0) & (order >= rank)
        assert not bool(leaking.any()), (
            f"{name} is not causal: the params of element (channel {channel}, position "
            f"{tuple(where)}) depend on {int(leaking.sum())} element(s) at or after it "
            "in raster order; an exact likelihood from it would be wrong")


__all__ = ["ModalityConformance", "check_causal", "check_role", "dgm_host", "dgm_plugin",
           "registered_plugin", "tiny_recipe", "write_recipe"]
