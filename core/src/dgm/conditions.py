"""Conditions in the families: the encoder every conditional family shares (a registered
condition network plus a learned "no condition" vector for condition dropout and
classifier-free guidance), the class embedding that is the default network for class
conditions, and the one way an encoded condition is attached to a network's input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgm import seeded_random
from dgm.contract import Condition


class ClassEmbedding(nn.Module):
    """A class condition to a learned vector: ``(B,)`` int64 indices to ``(B, dim)``.

    The vectors start with unit expected squared norm (entries of variance 1/dim), as
    much as one unit-variance input feature: attached to every position of an image
    they would otherwise outweigh the image at initialisation (a conditional VAE's MLP
    encoder on 8x8 digits sees 64 copies of the encoding and 64 pixels)."""

    def __init__(self, condition: Condition, dim: int = 32) -> None:
        super().__init__()
        if condition.kind != "class":
            raise ValueError(f"core:class-embedding encodes class conditions, not "
                             f"{condition.kind!r} ones")
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.embedding = nn.Embedding(len(condition.classes), dim)
        nn.init.normal_(self.embedding.weight, std=dim ** -0.5)

    def forward(self, c: Tensor) -> Tensor:
        return self.embedding(c.long().reshape(-1))


class TokenEncoder(nn.Module):
    """A token condition to a vector: ``(B, max_length)`` int64 indices (0: padding) to
    ``(B, dim)``. Token and learned position embeddings go through a small pre-norm
    transformer that ignores the padding; the mean over the real tokens (the length is
    the count of non-zero indices) is projected to ``dim``, starting at unit expected
    squared norm like :class:`ClassEmbedding`."""

    def __init__(self, condition: Condition, dim: int = 32, width: int = 64,
                 layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        if condition.kind != "tokens":
            raise ValueError(f"core:token-encoder encodes token conditions, not "
                             f"{condition.kind!r} ones")
        if dim < 1 or layers < 0 or width % heads:
            raise ValueError(f"need dim >= 1, layers >= 0 and width divisible by heads; got "
                             f"dim={dim}, layers={layers}, width={width}, heads={heads}")
        self.tokens = nn.Embedding(len(condition.vocabulary), width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(condition.max_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.normal_(self.out.weight, std=(width * dim) ** -0.5)
        nn.init.zeros_(self.out.bias)

    def forward(self, c: Tensor) -> Tensor:
        tokens = c.long()
        padding = tokens == 0
        padding[:, 0] &= ~padding.all(1)  # an empty text attends to its first position
        h = self.tokens(tokens) + self.positions[: tokens.shape[1]]
        h = self.transformer(h, src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1)
        return self.out(self.norm(pooled))


class TensorEncoder(nn.Module):
    """A tensor condition ``(B, C, *spatial)`` (one or two spatial dimensions, or none) to
    ``(B, dim)``: two 3-wide convolutions, an average pool to at most ``resolution``
    positions per dimension, and a linear map of the flattened features, so where things
    are in a small condition (a 4x4 thumbnail) survives."""

    def __init__(self, condition: Condition, dim: int = 32, width: int = 32,
                 resolution: int = 8) -> None:
        super().__init__()
        if condition.kind != "tensor":
            raise ValueError(f"core:tensor-encoder encodes tensor conditions, not "
                             f"{condition.kind!r} ones")
        channels, *spatial = condition.shape
        if len(spatial) > 2 or dim < 1 or resolution < 1:
            raise ValueError(f"core:tensor-encoder takes (C,), (C, L) or (C, H, W) "
                             f"conditions, dim >= 1 and resolution >= 1; got shape "
                             f"{condition.shape}, dim={dim}, resolution={resolution}")
        pooled = [min(s, resolution) for s in spatial]
        if spatial:
            conv = nn.Conv1d if len(spatial) == 1 else nn.Conv2d
            pool = nn.AdaptiveAvgPool1d if len(spatial) == 1 else nn.AdaptiveAvgPool2d
            self.features: nn.Module = nn.Sequential(
                conv(channels, width, 3, padding=1), nn.SiLU(),
                conv(width, width, 3, padding=1), nn.SiLU(), pool(tuple(pooled)))
            flat = width
            for s in pooled:
                flat *= s
        else:
            self.features, flat = nn.Identity(), channels
        self.out = nn.Linear(flat, dim)
        nn.init.normal_(self.out.weight, std=(flat * dim) ** -0.5)
        nn.init.zeros_(self.out.bias)

    def forward(self, c: Tensor) -> Tensor:
        return self.out(self.features(c.float()).flatten(1))


DEFAULT_CONDITION_NETWORKS = {"class": "core:class-embedding", "tokens": "core:token-encoder",
                              "tensor": "core:tensor-encoder"}
"""The registered condition network each condition kind uses when a recipe names none."""


class ConditionEncoder(nn.Module):
    """c to the ``(B, dim)`` vector a conditional family consumes.

    ``network`` is the registered condition network (a class embedding, ...). A learned
    ``null`` vector stands for "no condition": in training each example's encoding is
    replaced by it with probability ``dropout`` (so the model also learns p(x)), and
    :meth:`encode` with ``c = None`` gives it for every example (the unconditional
    branch of classifier-free guidance)."""

    def __init__(self, network: nn.Module, condition: Condition, dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"condition dropout must be in [0, 1), got {dropout}")
        self.network = network
        self.condition = condition
        self.dim = dim
        self.dropout = dropout
        self.null = nn.Parameter(torch.zeros(dim))

    def encode(self, c: Tensor | None, n: int | None = None) -> Tensor:
        """The encoding of ``c`` (``n`` null encodings when ``c`` is None); in training
        mode, with condition dropout applied."""
        if c is None:
            if n is None:
                raise ValueError("encode(None) needs the number of examples n")
            return self.null.expand(n, self.dim)
        out = self.network(c)
        if out.shape != (c.shape[0], self.dim):
            raise ValueError(f"the condition network {type(self.network).__name__} gave "
                             f"{tuple(out.shape)}; the condition role returns "
                             f"(B, dim) = ({c.shape[0]}, {self.dim})")
        if self.training and self.dropout > 0:
            keep = torch.rand(out.shape[0], 1, device=out.device) >= self.dropout
            out = torch.where(keep, out, self.null.to(out.dtype))
        return out

    def forward(self, c: Tensor | None, n: int | None = None) -> Tensor:
        return self.encode(c, n)

    def random(self, n: int, generator: torch.Generator | None,
               device: torch.device) -> Tensor:
        """``n`` raw conditions drawn uniformly, for sampling without a given condition
        (class conditions only)."""
        if self.condition.kind != "class":
            raise ValueError(f"a model conditioned on {self.condition.describe()} needs "
                             "the condition given: pass condition=...")
        return seeded_random.randint(len(self.condition.classes), (n,), generator, device)


def broadcast(encoded: Tensor, like: Tensor) -> Tensor:
    """The encoded condition ``(B, K)`` repeated over the positions of ``like``
    ``(B, C, *spatial)``: ``(B, K, *spatial)``."""
    encoded = encoded.to(like.dtype).reshape(*encoded.shape, *([1] * (like.dim() - 2)))
    return encoded.expand(-1, -1, *like.shape[2:])


def attach(x: Tensor, encoded: Tensor) -> Tensor:
    """``x`` ``(B, C, *spatial)`` (or ``(B, D)``) with the encoded condition ``(B, K)``
    concatenated on dimension 1, broadcast over the positions: ``(B, C + K, *spatial)``."""
    return torch.cat([x, broadcast(encoded, x)], 1)


def widened(shape: tuple[int, ...], extra: int) -> tuple[int, ...]:
    """``shape`` with ``extra`` more channels (or features): the input shape of a network
    that sees an attached condition."""
    return (shape[0] + extra, *shape[1:])
