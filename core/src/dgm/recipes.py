"""TOML recipes: load, apply dotted overrides, check the fixed sections.

A recipe names registered entries only (``name = "image:digits"``), never a Python object,
so running a stranger's recipe cannot import code.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli_w

from dgm.errors import RecipeError
from dgm.registry import SINGULAR, Registry
from dgm.settings import Where, dataclass_from


@dataclass
class RunConfig:
    """``[run]``: what the run is called and where it lives."""

    name: str = "run"
    seed: int = 0
    dir: str = ""
    """Run folder; default ``runs/<name>``."""
    description: str = ""

    NON_NEGATIVE: ClassVar = ("seed",)


@dataclass
class DataConfig:
    """``[data]`` keys the trainer uses; the others go to the data set factory."""

    batch_size: int = 64
    num_workers: int = 0
    """Processes that prepare batches beside training (kept for the whole run); 0: the
    training process itself, which suits data held in memory. A streamed folder wants
    a few. Batches go to pinned memory when training on CUDA."""

    POSITIVE: ClassVar = ("batch_size",)
    NON_NEGATIVE: ClassVar = ("num_workers",)


@dataclass
class TrainConfig:
    """``[train]``: the optimisation loop."""

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam's and AdamW's decay rates of the gradient's running mean and square."""
    momentum: float = 0.0
    """SGD's momentum."""
    lr_schedule: Literal["constant", "constant_with_warmup", "linear", "cosine",
                         "cosine_with_restarts", "polynomial"] = "constant"
    """How the learning rate moves with the step (diffusers' ``get_scheduler``): after
    ``warmup_steps`` of linear warm-up from 0, it stays, or decays to 0 at
    ``lr_schedule_steps``."""
    warmup_steps: int = 0
    lr_schedule_steps: int = 0
    """The steps a decaying schedule spans; 0: ``steps``. Set it to resume a run with more
    ``steps`` on the same schedule."""
    compile: bool = False
    """Compile the family's training step with ``torch.compile`` (accelerate's inductor
    backend): slower start, faster steps on a GPU. Checkpoints and weights keep their
    layout, so it may change on an existing run folder; the numbers differ from an
    uncompiled run's, since compiled code draws its noise with inductor's generator."""
    channels_last: bool = False
    """Keep 4-D weights (and so convolution activations) in channels-last memory order,
    which tensor cores prefer; the numbers are the same."""
    gradient_checkpointing: bool = False
    """Networks that declare the ``gradient-checkpointing`` capability (``core:unet2d``)
    recompute their activations in the backward pass: less memory, more compute."""
    log_with: list[str] = field(default_factory=list)
    """Experiment trackers accelerate logs the metrics to besides metrics.jsonl, e.g.
    ``["tensorboard"]`` (event files in the run folder's ``logs/``; needs
    ``pip install "dgm-core[tensorboard]"``), or any other accelerate knows and is
    installed (wandb, mlflow, ...)."""
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    max_grad_norm: float = 0.0
    """Clip the gradient norm to this; 0 disables clipping."""
    ema: bool = False
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 25
    progress: bool = True
    on_nan: Literal["stop", "skip"] = "stop"
    max_memory_gb: float = 0.0
    """Refuse a run whose model and one batch's training would need more memory than
    this (checked before anything is allocated); 0: 90 % of the training device's."""

    POSITIVE: ClassVar = ("steps", "grad_accum", "checkpoint_every", "keep_checkpoints",
                          "log_every")
    ABOVE_ZERO: ClassVar = ("lr",)
    NON_NEGATIVE: ClassVar = ("weight_decay", "max_grad_norm", "ema_decay", "max_memory_gb",
                              "momentum", "warmup_steps", "lr_schedule_steps")


@dataclass
class SampleConfig:
    """``[sample]``: what ``dgm run`` and ``dgm sample`` draw."""

    n: int = 64
    seed: int = 1234
    size: str = ""
    """``WIDTHxHEIGHT`` to sample at another size than the data's (fully convolutional
    families, e.g. textures); empty: the data's size."""

    POSITIVE: ClassVar = ("n",)


@dataclass
class ConditionConfig:
    """``[condition]``: whether the family models x given the data set's condition c
    (``DataInfo.condition``), and how. The condition encoder is the network role
    ``condition`` (``[networks.condition]``; default: the condition kind's)."""

    use: bool = False
    dim: int = 32
    """Size of the encoded condition every network receives."""
    dropout: float = 0.0
    """Probability, per training example, of replacing c by the learned "no condition":
    the model then also learns p(x), which classifier-free guidance needs."""

    POSITIVE: ClassVar = ("dim",)
    NON_NEGATIVE: ClassVar = ("dropout",)


@dataclass
class EvaluateConfig:
    """``[evaluate]``: the held-out likelihood (``likelihood`` goes to the family) and
    the sample metrics."""

    split: Literal["train", "val", "test"] = "test"
    batch_size: int = 64
    max_examples: int = 0
    """Evaluate the likelihood on at most this many examples; 0 means all."""
    likelihood: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] | None = None
    """Registered sample metrics to report; absent: the modality's ``metrics``
    (``dgm run`` writes the list it used into the run folder's recipe)."""
    metric_samples: int = 500
    """Generated samples the metrics see (and as many real examples per side of the
    real-vs-real reference), capped by the size of the splits."""

    POSITIVE: ClassVar = ("batch_size",)
    NON_NEGATIVE: ClassVar = ("max_examples",)


NAMED_SECTIONS = ("data", "family", "likelihood", "prior")
"""Tables that pick a registered entry with ``name`` and pass the rest as settings."""
SECTIONS = ("run", "data", "condition", "family", "networks", "likelihood", "prior", "train",
            "sample", "evaluate")
SECTION_KINDS = {"data": "datasets", "family": "families", "likelihood": "likelihoods",
                 "prior": "priors"}


@dataclass
class Recipe:
    """A parsed recipe: the raw tables plus where they came from."""

    tables: dict[str, Any]
    source: str = "<recipe>"
    overridden: dict[tuple[str, ...], str] = field(default_factory=dict)
    """Dotted key paths set (or tables created) by command-line overrides, with the
    override; errors about them name the override instead of the file."""
    defaulted: frozenset[tuple[str, ...]] = frozenset()
    """Key paths :func:`with_defaults` wrote in: a run folder saved before they were
    written out lacks them, and that is no difference."""

    def _origin(self, path: tuple[str, ...]) -> str:
        for n in range(1, len(path) + 1):
            if path[:n] in self.overridden:
                return f"command-line override {self.overridden[path[:n]]}"
        return self.source

    def where(self, key: str) -> str:
        """``key`` (``"[family]"``, ``"family.name"``, ``"[evaluate] metrics"``) prefixed
        with where it came from: the recipe file or a command-line override. For a table,
        an error about one of its keys names that key's own origin (see ``Where``)."""
        match = re.fullmatch(r"\[([^\]]*)\]\s*(.*)", key)
        dotted = (match[1] + (f".{match[2]}" if match[2] else "")) if match else key
        path = tuple(dotted.split("."))
        keys = {p[-1]: f"command-line override {item}: {key}"
                for p, item in self.overridden.items() if p[:-1] == path}
        return Where(f"{self._origin(path)}: {key}", keys)

    def table(self, section: str) -> dict[str, Any]:
        value = self.tables.get(section, {})
        return dict(value)

    @property
    def run(self) -> RunConfig:
        return dataclass_from(RunConfig, self.table("run"), self.where("[run]"))

    @property
    def train(self) -> TrainConfig:
        return dataclass_from(TrainConfig, self.table("train"), self.where("[train]"))

    @property
    def sample(self) -> SampleConfig:
        return dataclass_from(SampleConfig, self.table("sample"), self.where("[sample]"))

    @property
    def condition(self) -> ConditionConfig:
        config = dataclass_from(ConditionConfig, self.table("condition"),
                                self.where("[condition]"))
        if not 0 <= config.dropout < 1:
            raise RecipeError(f"{self.where('condition.dropout')}: should be in [0, 1), "
                              f"got {config.dropout}")
        return config

    @property
    def evaluate(self) -> EvaluateConfig:
        return dataclass_from(EvaluateConfig, self.table("evaluate"),
                              self.where("[evaluate]"))

    @property
    def data_loading(self) -> DataConfig:
        data = self.table("data")
        keys = {k: data[k] for k in ("batch_size", "num_workers") if k in data}
        return dataclass_from(DataConfig, keys, self.where("[data]"))

    def named(self, section: str) -> tuple[str | None, dict[str, Any]]:
        """The ``name`` of a named table and its other settings."""
        table = self.table(section)
        name = table.pop("name", None)
        if name is not None and not isinstance(name, str):
            raise RecipeError(f"{self.where(section + '.name')}: should be a string, "
                              f"got {name!r}")
        if section == "data":
            table.pop("batch_size", None)
            table.pop("num_workers", None)
        return name, table

    def to_toml(self) -> str:
        return tomli_w.dumps(self.tables)

    def validate(self, registry: Registry) -> None:
        """Check sections, config tables and registered names before anything is built."""
        for section in self.tables:
            if section not in SECTIONS:
                close = difflib.get_close_matches(section, SECTIONS, n=1)
                hint = f" Did you mean [{close[0]}]?" if close else ""
                raise RecipeError(f"{self._origin((section,))}: unknown section "
                                  f"[{section}].{hint} "
                                  f"Sections are: {', '.join(SECTIONS)}.")
            if not isinstance(self.tables[section], dict):
                raise RecipeError(f"{self.where(section)}: should be a table ([{section}]), "
                                  f"got {self.tables[section]!r}")
        _ = (self.run, self.train, self.sample, self.evaluate, self.data_loading,
             self.condition)
        for section in ("data", "family"):
            if self.named(section)[0] is None:
                raise RecipeError(f"{self.where(section + '.name')}: missing; name a "
                                  f"registered {SINGULAR[SECTION_KINDS[section]]}, e.g. "
                                  f"{_example(registry, SECTION_KINDS[section])}")
        for section in NAMED_SECTIONS:
            name, _ = self.named(section)
            if name is not None:
                registry.get(SECTION_KINDS[section], name, where=self.where(section + ".name"))
        for role, table in self.table("networks").items():
            if not isinstance(table, dict):
                raise RecipeError(f"{self.where(f'networks.{role}')}: should be a table "
                                  f"of settings, e.g. [networks.{role}] hidden = 64 (the "
                                  "modality's default network for the role), optionally "
                                  "with a registered network's name")
            if "name" in table:  # without a name: the modality's default for the role
                where = self.where(f"networks.{role}.name")
                if not isinstance(table["name"], str):
                    raise RecipeError(f"{where}: should be a string, got {table['name']!r}")
                registry.get("networks", table["name"], where=where)


def _example(registry: Registry, kind: str) -> str:
    names = [e.name for e in registry.entries(kind)]
    return repr(names[0]) if names else "(none registered)"


MAX_NESTING = 32
"""How deep tables and lists may nest in a recipe (a real one nests three or four)."""


def _nesting(value: Any, depth: int = 0) -> int:
    if depth > MAX_NESTING:
        return depth
    items = value.values() if isinstance(value, dict) else value if isinstance(
        value, list) else ()
    return max((_nesting(v, depth + 1) for v in items), default=depth)


def read_recipe(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a TOML recipe file and apply ``key.sub=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist"
                          + (" (it is a folder)" if path.is_dir() else ""))
    try:
        tables = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        tables = None
    if tables is None or _nesting(tables) > MAX_NESTING:
        raise RecipeError(f"{path}: tables and lists are nested more than {MAX_NESTING} "
                          "deep; no recipe needs that, so the file was not read further")
    recipe = Recipe(tables, str(path))
    for item in overrides:
        apply_override(recipe, item)
    return recipe


def parse_value(raw: str) -> Any:
    """A command-line value parsed as TOML (``3``, ``true``, ``[8, 16]``), else the string."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return raw
    if isinstance(value, float) and raw.strip().lstrip("+-") in ("nan", "inf"):
        return raw  # a folder called "nan" is likelier than a setting of NaN
    return value


def apply_override(recipe: Recipe, item: str) -> None:
    """Set a dotted key from ``key=value``; the value is parsed as TOML, else a string."""
    if "=" not in item:
        raise RecipeError(f"override {item!r}: expected key=value, e.g. train.steps=100")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise RecipeError(f"override {item!r}: bad key {key!r}")
    value = parse_value(raw)
    node = recipe.tables
    for n, part in enumerate(parts[:-1]):
        if part not in node:  # a table the override creates
            recipe.overridden.setdefault(tuple(parts[:n + 1]), item)
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"override {item!r}: {part!r} is not a table")
    node[parts[-1]] = value
    recipe.overridden[tuple(parts)] = item


def with_defaults(recipe: Recipe, built: dict[tuple[str, ...], dict[str, Any]]) -> Recipe:
    """A copy with the settings of what was built (the registered names and every
    default of the data set, the family, its networks, likelihood and prior) written into
    their tables, so a run folder's recipe.toml says everything that made the model."""
    tables = copy.deepcopy(recipe.tables)
    defaulted = set(recipe.defaulted)
    for path, settings in built.items():
        table = tables
        for part in path:
            table = table.setdefault(part, {})
        for key, value in settings.items():
            if key not in table:
                table[key] = value
                defaulted.add((*path, key))
    return Recipe(tables, recipe.source, dict(recipe.overridden), frozenset(defaulted))


def resolved(recipe: Recipe) -> Recipe:
    """A copy with the run/train/sample/evaluate defaults written out."""
    tables = copy.deepcopy(recipe.tables)
    tables["run"] = asdict(recipe.run)
    tables["train"] = asdict(recipe.train)
    tables["sample"] = asdict(recipe.sample)
    if "condition" in tables or recipe.condition.use:
        tables["condition"] = asdict(recipe.condition)
    tables["evaluate"] = {k: v for k, v in asdict(recipe.evaluate).items() if v is not None}
    return Recipe(tables, recipe.source, dict(recipe.overridden), recipe.defaulted)
