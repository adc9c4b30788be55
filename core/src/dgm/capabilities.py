"""Optional capabilities of networks and families, declared by name instead of found by
probing for an attribute: a class lists what it can do in ``capabilities``, every name is
checked against the declarations here, and a declared capability whose members are
missing is an error. A misspelt capability is therefore an error, not a silent "no".

    class MyUNet(nn.Module):
        capabilities = frozenset({"fully-convolutional"})
        size_multiple = 4
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any

from dgm.errors import DgmError


class CapabilityError(DgmError, TypeError):
    """A class declares a capability that does not exist, or lacks one's members."""


@dataclass(frozen=True)
class Capability:
    """A named optional ability: the members an object with it has, and what it means."""

    name: str
    members: tuple[str, ...]
    meaning: str


FULLY_CONVOLUTIONAL = Capability(
    "fully-convolutional", ("size_multiple",),
    "works at any height and width divisible by size_multiple (dgm sample --size)")
SPATIAL_LATENTS = Capability(
    "spatial-latents", ("latent_shape",),
    "a generator that maps a noise map shaped latent_shape(data_shape) instead of a vector")
CACHED_GENERATION = Capability(
    "cached-generation", ("generate",),
    "an autoregressive network that samples in one pass: generate(n, length, likelihood, "
    "generator, condition=None)")
ENCODES = Capability(
    "encodes", ("encode", "decode"),
    "a family with an amortised posterior: encode(x, e) gives its mean and log-variance, "
    "decode(z, c) the likelihood's mean (latent data sets read it)")
SIZED_SAMPLING = Capability(
    "sized-sampling", ("sample",),
    "a family whose sample(..., size=(height, width)) draws at other sizes")
GRADIENT_CHECKPOINTING = Capability(
    "gradient-checkpointing", ("enable_gradient_checkpointing",),
    "a network that can recompute its activations in the backward pass instead of keeping "
    "them (train.gradient_checkpointing): less memory for more compute")
CAPABILITIES: dict[str, Capability] = {c.name: c for c in (
    FULLY_CONVOLUTIONAL, SPATIAL_LATENTS, CACHED_GENERATION, ENCODES, SIZED_SAMPLING,
    GRADIENT_CHECKPOINTING)}
"""Every capability, by name."""

LEGACY_PROBES = {"size_multiple": FULLY_CONVOLUTIONAL, "latent_shape": SPATIAL_LATENTS,
                 "generate": CACHED_GENERATION}
"""Hook API 1 networks said what they could do by having these members."""


def declared(obj: Any) -> frozenset[str]:
    """The capability names ``obj`` (or its class) declares, each checked: an unknown
    name, or a declared capability without its members, raises :class:`CapabilityError`."""
    names = getattr(obj, "capabilities", frozenset())
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise CapabilityError(f"{type(obj).__name__}.capabilities should be a set of "
                              f"capability names, got {names!r}")
    for name in names:
        capability = CAPABILITIES.get(name)
        if capability is None:
            close = difflib.get_close_matches(name, list(CAPABILITIES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CapabilityError(f"{type(obj).__name__} declares an unknown capability "
                                  f"{name!r}{hint} (capabilities: "
                                  f"{', '.join(sorted(CAPABILITIES))})")
        missing = [m for m in capability.members if not hasattr(obj, m)]
        if missing:
            raise CapabilityError(f"{type(obj).__name__} declares {name!r} but has no "
                                  f"{', '.join(missing)}: {capability.meaning}")
    return frozenset(names)


def has(obj: Any, capability: Capability) -> bool:
    """True when ``obj`` declares ``capability``. A hook API 1 network that has a legacy
    member (``size_multiple``, ``latent_shape``, ``generate``) without declaring anything
    counts as having it, with a deprecation warning saying what to declare."""
    names = declared(obj)
    if capability.name in names:
        return True
    if names or "capabilities" in dir(type(obj)):
        return False
    for member, legacy in LEGACY_PROBES.items():
        if legacy is capability and hasattr(obj, member):
            warnings.warn(f"{type(obj).__name__} has {member} but declares no capabilities; "
                          f"add capabilities = frozenset({{{capability.name!r}}}) (hook API "
                          "2)", DeprecationWarning, stacklevel=2)
            return True
    return False
