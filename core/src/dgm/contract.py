"""The latent-to-data contract: the interfaces every plugin and family speaks.

z ~ p(z) (a :class:`Prior`), params = g_theta(z) (a decoder network), and
x ~ p_theta(x | params) (a :class:`Likelihood`); a :class:`Family` fits theta by its own
objective and reports log-likelihoods as exact values, bounds, or not at all.
All log-probabilities are in nats per example (summed over every dimension).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

Batch = dict[str, Tensor]
"""A batch: ``{"x": data}``, and ``{"x": data, "c": condition}`` where the data set
declares a condition (:attr:`DataInfo.condition`): one key, whatever the condition's kind."""

CONDITION_KEY = "c"
"""The batch key of the condition."""
LEGACY_CONDITION_KEY = "label"
"""Hook API 1 data sets put class indices under this key; :func:`as_batch` renames it."""

LikelihoodKind = Literal["exact", "bound", "none"]


# -------------------------------------------------------------------------------------
# Distributions
# -------------------------------------------------------------------------------------


class Likelihood(ABC):
    """p(x | params): the distribution a generator's output parametrises.

    ``params`` has ``param_channels`` times the data's channels on dimension 1 (for
    example mean and log-scale stacked), and the data's other dimensions unchanged.
    """

    param_channels: int = 1
    discrete: bool = False
    """True when ``log_prob`` is a probability mass (values on a finite grid)."""

    @abstractmethod
    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x | params) in nats, summed over all but the batch dimension: ``(B,)``."""

    @abstractmethod
    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw x ~ p(x | params), shaped like the data."""

    @abstractmethod
    def mean(self, params: Tensor) -> Tensor:
        """E[x | params], shaped like the data."""

    def check_data(self, x: Tensor) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` if ``x`` lies outside this likelihood's support."""


class Prior(ABC, nn.Module):
    """p(z) over latents of a fixed per-example ``shape``."""

    shape: tuple[int, ...]

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents, shaped ``(n, *shape)``, on the prior's device."""

    @abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) in nats, ``(B,)``."""


# -------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The values of discrete data: ``levels`` evenly spaced values from ``low`` to
    ``high``, both included, each the centre of a bin of width :attr:`bin_width`.

    One object for every family, likelihood and check that needs the grid. Binary data
    is ``Grid(2, 0.0, 1.0)``: the values 0 and 1 (``DataInfo(levels=2, value_range=(0.0,
    1.0))``), which every discrete likelihood, family and the kit agree on."""

    levels: int
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.levels < 2:
            raise ValueError(f"a grid needs at least 2 levels, got {self.levels}")
        if not self.low < self.high:
            raise ValueError(f"a grid's low must be below its high, got {self.low} and "
                             f"{self.high}")

    @property
    def bin_width(self) -> float:
        """The spacing of the values, h = (high - low) / (levels - 1)."""
        return (self.high - self.low) / (self.levels - 1)

    def values(self, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
        """The ``levels`` values, lowest first."""
        return torch.linspace(self.low, self.high, self.levels, device=device, dtype=dtype)

    def index(self, x: Tensor) -> Tensor:
        """The index of the nearest value for each element of ``x`` (int64)."""
        steps = (x.clamp(self.low, self.high) - self.low) * ((self.levels - 1)
                                                              / (self.high - self.low))
        return torch.round(steps).long()

    def quantize(self, x: Tensor) -> Tensor:
        """Each element of ``x`` moved to the nearest value, spelt as :meth:`values`."""
        return self.values(x.device, x.dtype)[self.index(x)]

    def contains(self, x: Tensor, atol: float = 1e-4) -> bool:
        """True when every element of ``x`` is within ``atol`` of a value."""
        return bool((self.quantize(x) - x).abs().max() <= atol) if x.numel() else True

    def describe(self) -> str:
        return f"the {self.levels}-level grid on [{self.low:g}, {self.high:g}]"


ConditionKind = Literal["none", "class", "tokens", "tensor"]
CONDITION_KINDS: tuple[str, ...] = ("none", "class", "tokens", "tensor")


@dataclass(frozen=True)
class Condition:
    """What each example carries besides x, declared by its data set.

    - ``none``: nothing (unconditional data).
    - ``class``: an int64 index per example into ``classes`` (their names).
    - ``tokens``: an int64 sequence per example, ``(max_length,)``, of indices into
      ``vocabulary`` (characters or phonemes); index 0 is padding, so lengths are the
      count of non-zero entries.
    - ``tensor``: a float tensor per example shaped ``shape`` in the registered
      ``modality`` (a low-resolution image, a masked image and its mask, a mel).

    Build one with :meth:`of_classes`, :meth:`of_tokens` or :meth:`of_tensor`.
    """

    kind: ConditionKind = "none"
    classes: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()
    max_length: int = 0
    modality: str = ""
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            raise ValueError(f"condition kind must be one of {', '.join(CONDITION_KINDS)}, "
                             f"got {self.kind!r}")
        for name in ("classes", "vocabulary", "shape"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.kind == "class" and len(self.classes) < 2:
            raise ValueError(f"a class condition needs at least 2 class names, got "
                             f"{list(self.classes)}")
        if self.kind == "tokens" and (len(self.vocabulary) < 2 or self.max_length < 1):
            raise ValueError("a tokens condition needs a vocabulary (index 0: padding) and "
                             "a max_length of at least 1")
        if self.kind == "tensor" and (not self.modality or not self.shape):
            raise ValueError("a tensor condition needs its modality and shape")

    @classmethod
    def of_classes(cls, names: Sequence[str]) -> Condition:
        return cls("class", classes=tuple(names))

    @classmethod
    def of_tokens(cls, vocabulary: Sequence[str], max_length: int) -> Condition:
        return cls("tokens", vocabulary=tuple(vocabulary), max_length=max_length)

    @classmethod
    def of_tensor(cls, modality: str, shape: Sequence[int]) -> Condition:
        return cls("tensor", modality=modality, shape=tuple(shape))

    def encode_text(self, text: str) -> Tensor:
        """A token condition's ``(max_length,)`` int64 indices for ``text``, matching the
        longest vocabulary entry at each position (characters, or phonemes of several
        characters) and padding with 0. Text that no entry matches, or that needs more
        than ``max_length`` tokens, is a ValueError saying where."""
        if self.kind != "tokens":
            raise ValueError(f"encode_text needs a tokens condition, not {self.kind!r}")
        entries = sorted(((v, i) for i, v in enumerate(self.vocabulary) if i and v),
                         key=lambda entry: -len(entry[0]))
        tokens, position = [], 0
        while position < len(text):
            match = next(((v, i) for v, i in entries if text.startswith(v, position)), None)
            if match is None:
                shown = "".join(v for v in self.vocabulary[1:] if len(v) == 1) or \
                    ", ".join(self.vocabulary[1:])
                raise ValueError(f"{text[position]!r} at position {position} of {text!r} is "
                                 f"not in the vocabulary ({shown!r})")
            tokens.append(match[1])
            position += len(match[0])
        if len(tokens) > self.max_length:
            raise ValueError(f"{text!r} is {len(tokens)} tokens; the model takes at most "
                             f"{self.max_length}")
        return torch.tensor(tokens + [0] * (self.max_length - len(tokens)))

    def decode_tokens(self, tokens: Tensor) -> str:
        """The text of a token condition's indices (padding dropped)."""
        return "".join(self.vocabulary[int(i)] for i in tokens.reshape(-1) if int(i))

    def describe(self) -> str:
        """One line for messages: what a model trained on this condition accepts."""
        if self.kind == "class":
            return f"a class: one of {', '.join(self.classes)}"
        if self.kind == "tokens":
            return (f"a token sequence of up to {self.max_length} tokens from a "
                    f"{len(self.vocabulary)}-entry vocabulary")
        if self.kind == "tensor":
            return f"a {self.modality} tensor shaped {'x'.join(map(str, self.shape))}"
        return "no condition"


NO_CONDITION = Condition()


def class_condition(names: Sequence[str]) -> Condition:
    """A class condition over ``names``, or none where there are fewer than two (a folder
    data set with one sub-folder has nothing to choose between)."""
    return Condition.of_classes(names) if len(names) >= 2 else NO_CONDITION


@dataclass(frozen=True)
class DataInfo:
    """What a model must know about the data it fits."""

    modality: str
    """Registered modality name, e.g. ``"image:image"``."""
    shape: tuple[int, ...]
    """Per-example tensor shape, channels first."""
    levels: int | None = None
    """Number of evenly spaced values on ``value_range`` for discrete data (see
    :attr:`grid`); None if continuous."""
    value_range: tuple[float, float] = (-1.0, 1.0)
    classes: Sequence[str] = ()
    """Hook API 1's class names; kept equal to ``condition.classes``. New code declares
    ``condition=Condition.of_classes(names)`` instead."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where derived data came from, for modalities that need it (latents name the run
    of the autoencoder that made them). JSON-serialisable."""
    condition: Condition = NO_CONDITION
    """What each example carries besides x (batch key ``"c"``)."""

    def __post_init__(self) -> None:
        if isinstance(self.condition, dict):  # read back from data_info.json
            object.__setattr__(self, "condition", Condition(**self.condition))
        if self.classes and self.condition.kind == "none":
            object.__setattr__(self, "condition", class_condition(self.classes))
        object.__setattr__(self, "classes", tuple(self.condition.classes))

    @property
    def grid(self) -> Grid | None:
        """The grid of discrete data (``levels`` values on ``value_range``); None if
        continuous."""
        if not self.levels:
            return None
        return Grid(self.levels, float(self.value_range[0]), float(self.value_range[1]))

    @property
    def dims(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class DataSource(Dataset):
    """A map-style data set whose items are :data:`Batch`-style dicts of tensors."""

    info: DataInfo

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError


class TensorData(DataSource):
    """Examples ``x`` (and optional conditions ``c``, one per example) held in memory."""

    def __init__(self, x: Tensor, c: Tensor | None, info: DataInfo) -> None:
        self.x = x
        self.c = c
        self.info = info

    @property
    def labels(self) -> Tensor | None:
        """Hook API 1's name for ``c``."""
        return self.c

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {"x": self.x[index]}
        if self.c is not None:
            item[CONDITION_KEY] = self.c[index]
        return item


_warned_legacy_key = False


def as_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with a hook-API-1 ``"label"`` renamed to ``"c"`` (warned once)."""
    global _warned_legacy_key
    if LEGACY_CONDITION_KEY in batch and CONDITION_KEY not in batch:
        if not _warned_legacy_key:
            import warnings

            warnings.warn("a data set yields its condition under 'label' (hook API 1); "
                          "yield it under 'c' and declare DataInfo.condition",
                          DeprecationWarning, stacklevel=2)
            _warned_legacy_key = True
        batch = {**batch, CONDITION_KEY: batch[LEGACY_CONDITION_KEY]}
        del batch[LEGACY_CONDITION_KEY]
    return batch


# -------------------------------------------------------------------------------------
# Network roles
# -------------------------------------------------------------------------------------

Conditioning = Literal["input", "argument"]


@dataclass(frozen=True)
class Role:
    """A network role: what a family asks a modality's (or a recipe's) network to be.

    ``arguments`` are the structural arguments the family passes to the factory (the
    builder refuses a factory that does not accept one); ``returns`` states the output
    the family relies on; ``checks`` are further properties the conformance kit tests.
    ``conditioning`` says how an encoded condition, a ``(B, condition_dim)`` vector,
    reaches the network when the model is conditional:

    - ``"input"``: the family attaches it to the network's input (as extra channels
      broadcast over positions, or extra features) and widens the structural argument
      that sizes that input, so any network of the role serves conditional models
      unchanged;
    - ``"argument"``: the factory also receives ``condition_dim`` and the network is
      called with the encoded condition as its last argument (None when unconditional).
    """

    name: str
    arguments: tuple[str, ...]
    returns: str
    conditioning: Conditioning | None = "input"
    call: str = "network(x)"
    checks: tuple[str, ...] = ()


CONDITION_DIM = "condition_dim"
"""The structural argument an ``"argument"``-conditioned role receives when conditional."""

ENCODER = Role("encoder", ("data_shape", "latent_dim"),
               "(B, 2 * latent_dim): mean and log-variance of the posterior over z",
               call="encoder(x)")
DECODER = Role("decoder", ("data_shape", "latent_dim", "param_channels"),
               "(B, param_channels * C, *spatial): the likelihood's params, stacked (p c)",
               call="decoder(z)")
COUPLING = Role("coupling", ("in_channels", "out_channels"),
                "(B, out_channels, *spatial): a coupling's shift and log-scale",
                call="coupling(x_kept)",
                checks=("starts at zero output, so each coupling starts as the identity",))
AUTOREGRESSIVE = Role("autoregressive", ("data_shape", "param_channels"),
                      "(B, param_channels * C, *spatial): params of each element from the "
                      "elements before it", conditioning="argument",
                      call="network(x, condition)",
                      checks=("causal in raster order (positions, then channels)",))
DENOISER = Role("denoiser", ("data_shape",), "shaped like x_t: the predicted eps or v",
                conditioning="argument", call="denoiser(x_t, t, condition)")
GENERATOR = Role("generator", ("data_shape", "latent_dim"),
                 "(B, *data_shape) in the data's value range", call="generator(z)")
CRITIC = Role("critic", ("data_shape",), "(B,) or (B, 1): one score per example",
              call="critic(x)")
CONDITION_ENCODER = Role("condition", ("condition", "dim"),
                         "(B, dim): the encoded condition every conditional family consumes",
                         conditioning=None, call="encoder(c)")
ROLES: dict[str, Role] = {r.name: r for r in (ENCODER, DECODER, COUPLING, AUTOREGRESSIVE,
                                              DENOISER, GENERATOR, CRITIC,
                                              CONDITION_ENCODER)}
"""Every role the core's families build, by name."""


# -------------------------------------------------------------------------------------
# Families
# -------------------------------------------------------------------------------------


@dataclass
class LogLikelihood:
    """Per-example log-likelihoods with a statement of what they are."""

    values: Tensor
    """log p(x) (or its lower bound) in nats, ``(B,)``."""
    kind: LikelihoodKind
    method: str
    """How it was computed, e.g. ``"IWAE, k=1000"``."""


class Family(ABC, nn.Module):
    """A way to fit theta: owns its networks and objective.

    Subclasses set ``likelihood_kind`` ("exact", "bound" or "none") so evaluation can say
    what its numbers mean.
    """

    likelihood_kind: LikelihoodKind = "none"
    roles: ClassVar[tuple[Role, ...]] = ()
    """The network roles this family builds."""

    @property
    def conditional(self) -> bool:
        """True when the family was built with a condition encoder (``condition.use``)."""
        return getattr(self, "condition_encoder", None) is not None

    def encoded_condition(self, c: Tensor | None, n: int) -> Tensor | None:
        """e(c), the condition encoder's output for ``n`` examples; None for an
        unconditional family. A conditional family given no c raises."""
        encoder = getattr(self, "condition_encoder", None)
        if encoder is None:
            return None
        if c is None:
            raise ValueError(f"this {type(self).__name__} is conditional: pass the condition c")
        return encoder(c, n)

    def condition_for_sampling(self, condition: Tensor | None, n: int,
                               generator: torch.Generator | None,
                               device: torch.device) -> Tensor | None:
        """The raw conditions ``n`` samples are drawn for: ``condition`` moved to
        ``device``, or, when None, classes drawn at random with ``generator`` (a model
        conditioned on tokens or a tensor needs them given). None for an unconditional
        family, which refuses a condition."""
        encoder = getattr(self, "condition_encoder", None)
        if encoder is None:
            if condition is not None:
                raise ValueError(f"this {type(self).__name__} is unconditional; it takes no "
                                 "condition")
            return None
        if condition is None:
            return encoder.random(n, generator, device)
        if condition.shape[0] != n:
            raise ValueError(f"{condition.shape[0]} conditions given for {n} samples")
        return condition.to(device)

    @abstractmethod
    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The training objective for one batch (a scalar to minimise) and detached scalar
        tensors to log; the trainer reads them only on logging steps."""

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Calls :meth:`loss`, so wrappers such as DistributedDataParallel see a forward."""
        return self.loss(batch)

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None,
               condition: Tensor | None = None) -> Tensor:
        """``n`` new examples in the data representation; a conditional family draws them
        given ``condition`` (``n`` raw conditions as the data set yields them; None:
        conditions drawn at random). A family may accept further keyword options with
        defaults (a diffusion sampler and its number of steps); ``dgm sample RUN
        --option key=value`` passes them, checked by name and type."""

    def log_likelihood(self, x: Tensor, c: Tensor | None = None,
                       **settings: Any) -> LogLikelihood:
        """log p(x) (or log p(x | c) for a conditional family) per example, exact or a
        bound; families without one raise."""
        raise NotImplementedError(f"{type(self).__name__} defines no likelihood")

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups for the trainer's AdamW, given ``train.lr``: by default one
        group holding every parameter. A family overrides this where its networks need
        their own learning rates or Adam betas (a GAN's generator and critic)."""
        return [{"params": list(self.parameters())}]


# -------------------------------------------------------------------------------------
# Modalities
# -------------------------------------------------------------------------------------


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass
class Representation:
    """What models see of decoded data, and its stated inverse back to codec space (for
    audio: waveform to log-mel and back). ``metadata`` holds every setting the inverse
    depends on, so mismatched settings can be detected."""

    name: str = "identity"
    forward: Callable[[Tensor], Tensor] = _identity
    inverse: Callable[[Tensor], Tensor] = _identity
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Modality:
    """A kind of data: how files become tensors and back, and what models default to.

    ``networks`` maps a network role (``"encoder"``, ``"decoder"``, ...) to the
    registered network used when a recipe does not name one.
    """

    name: str
    read: Callable[[Path], Tensor]
    """Codec: a file to a tensor in the data representation."""
    write: Callable[[Tensor, Path], None]
    """Codec: a tensor in the data representation to a file."""
    preview: Callable[[Tensor, Path], None]
    """Write a picture a person can look at for a batch of examples."""
    file_suffix: str = ".bin"
    representation: Representation = field(default_factory=Representation)
    """Data sets yield tensors in this representation; samples are inverted before
    ``write``."""
    networks: dict[str, str] = field(default_factory=dict)
    likelihood: str = "core:gaussian"
    metrics: Sequence[str] = ()
