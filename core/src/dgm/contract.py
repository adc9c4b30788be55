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
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

Batch = dict[str, Tensor]
"""A batch: ``{"x": data, ...}``; ``"label"`` holds a condition where the data has one."""

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
class DataInfo:
    """What a model must know about the data it fits."""

    modality: str
    """Registered modality name, e.g. ``"image:image"``."""
    shape: tuple[int, ...]
    """Per-example tensor shape, channels first."""
    levels: int | None = None
    """Number of evenly spaced values in [-1, 1] for discrete data; None if continuous."""
    value_range: tuple[float, float] = (-1.0, 1.0)
    classes: Sequence[str] = ()
    """Names of the conditioning labels, where the data has them."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where derived data came from, for modalities that need it (latents name the run
    of the autoencoder that made them). JSON-serialisable."""

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
    """Examples ``x`` (and optional ``labels``) held in memory as tensors."""

    def __init__(self, x: Tensor, labels: Tensor | None, info: DataInfo) -> None:
        self.x = x
        self.labels = labels
        self.info = info

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {"x": self.x[index]}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item


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
        """``n`` new examples in the data representation. A family may accept further
        keyword options with defaults (a diffusion sampler and its number of steps);
        ``dgm sample RUN --option key=value`` passes them, checked by name and type."""

    def log_likelihood(self, x: Tensor, **settings: Any) -> LogLikelihood:
        """log p(x) per example, exact or a bound; families without one raise."""
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
