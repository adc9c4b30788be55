"""PixelCNN networks for the autoregressive family: x (B, C, H, W) to likelihood params
(B, P*C, H, W), stacked "(p c)", where the params of pixel (i, j), channel c see only
pixels before (i, j) in raster order and, at (i, j) itself, channels before c.

Channel order within a pixel follows the masks of van den Oord et al. (2016): feature
channels are split into C groups, group g stands for data channel g, and at the current
pixel a type-A kernel lets group g see data channels < g (R sees nothing, G sees R, B
sees R and G) while type-B kernels let it see feature groups <= g.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def channel_groups(channels: int, groups: int) -> Tensor:
    """The group of each of ``channels`` feature channels: ``groups`` contiguous blocks."""
    return torch.arange(channels) * groups // channels


def pixel_mask(groups_out: Tensor, groups_in: Tensor, own: bool) -> Tensor:
    """``(out, in)`` kernel mask at the current pixel: an output sees earlier groups, and
    its own group too when ``own`` (type B) but not otherwise (type A)."""
    out, into = groups_out[:, None], groups_in[None, :]
    return (out >= into) if own else (out > into)


def raster_mask(groups_out: Tensor, groups_in: Tensor, kernel_size: int, own: bool) -> Tensor:
    """Square kernel mask: rows above the centre, the centre row left of the centre, and
    the centre pixel through :func:`pixel_mask` (the original PixelCNN's mask)."""
    centre = kernel_size // 2
    mask = torch.zeros(len(groups_out), len(groups_in), kernel_size, kernel_size)
    mask[:, :, :centre, :] = 1
    mask[:, :, centre, :centre] = 1
    mask[:, :, centre, centre] = pixel_mask(groups_out, groups_in, own).float()
    return mask


def row_mask(groups_out: Tensor, groups_in: Tensor, width: int, own: bool) -> Tensor:
    """Mask of a ``(1, width)`` kernel whose last column is the current pixel."""
    mask = torch.ones(len(groups_out), len(groups_in), 1, width)
    mask[:, :, 0, -1] = pixel_mask(groups_out, groups_in, own).float()
    return mask


class PaddedConv2d(nn.Conv2d):
    """A convolution with explicit (left, right, top, bottom) zero padding and an optional
    fixed 0/1 mask on its kernel, shaped ``(out, in, kh, kw)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                 mask: Tensor | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.edges = padding
        if mask is not None:
            self.register_buffer("mask", mask, persistent=False)
        else:
            self.mask = None

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight if self.mask is None else self.weight * self.mask
        return self._conv_forward(F.pad(x, self.edges), weight, self.bias)


def gate(features: Tensor) -> Tensor:
    """Gated activation tanh(a) * sigmoid(b) over the two halves of the channels."""
    a, b = features.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(features: Tensor) -> Tensor:
    """Move features one row down, so row i holds what row i-1 computed."""
    return F.pad(features, (0, 0, 1, 0))[:, :, :-1]


class GatedLayer(nn.Module):
    """One layer of the gated PixelCNN (van den Oord et al. 2016), without a blind spot.

    The vertical stack's kernel covers the current row and the rows above it; shifted one
    row down, it feeds the horizontal stack, whose kernel covers the current row up to the
    current pixel. Every layer but the first adds a residual on the horizontal stack.
    """

    def __init__(self, in_channels: int, hidden: int, data_channels: int, kernel_size: int,
                 first: bool, dropout: float) -> None:
        super().__init__()
        reach = kernel_size // 2
        hidden_groups = channel_groups(hidden, data_channels)
        gate_groups = torch.cat([hidden_groups, hidden_groups])
        in_groups = torch.arange(data_channels) if first else hidden_groups
        self.vertical = PaddedConv2d(in_channels, 2 * hidden, (reach + 1, kernel_size),
                                     (reach, reach, reach, 0))
        self.vertical_to_horizontal = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.horizontal = PaddedConv2d(in_channels, 2 * hidden, (1, reach + 1), (reach, 0, 0, 0),
                                       row_mask(gate_groups, in_groups, reach + 1, own=not first))
        self.horizontal_out = PaddedConv2d(hidden, hidden, (1, 1),
                                           mask=row_mask(hidden_groups, hidden_groups, 1, True))
        self.dropout = nn.Dropout(dropout)
        self.residual = not first

    def forward(self, vertical: Tensor, horizontal: Tensor,
                condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``condition``: ``(B, 4 * hidden)`` biases for the vertical and horizontal
        stacks' gates, the same at every pixel (the conditional gated PixelCNN)."""
        v_features = self.vertical(vertical)
        h_features = (self.horizontal(horizontal)
                      + self.vertical_to_horizontal(shift_down(v_features)))
        if condition is not None:
            v_bias, h_bias = condition[:, :, None, None].chunk(2, dim=1)
            v_features, h_features = v_features + v_bias, h_features + h_bias
        h_out = self.horizontal_out(self.dropout(gate(h_features)))
        if self.residual:
            h_out = h_out + horizontal
        return self.dropout(gate(v_features)), h_out


class PixelCNN(nn.Module):
    """Gated PixelCNN (default) or the original masked-convolution PixelCNN
    (``gated = false``: a type-A ``kernel_size`` conv, then residual type-B convs, which
    has the original's blind spot), then a 1x1 head to the likelihood's params.

    ``hidden`` feature channels (split into C groups, so at least C), ``layers`` masked
    layers, an odd ``kernel_size`` >= 3, ``dropout`` on the gated features. With
    ``condition_dim`` the network is called ``network(x, condition)`` and a learned
    projection of the encoded condition biases every layer's features, the same at every
    pixel, so causality is kept (van den Oord et al. 2016's conditional PixelCNN).
    """

    def __init__(self, data_shape: tuple[int, ...], param_channels: int, hidden: int = 64,
                 layers: int = 6, kernel_size: int = 3, dropout: float = 0.0,
                 gated: bool = True, condition_dim: int = 0) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"PixelCNN needs images shaped (C, H, W), got {data_shape}")
        channels = data_shape[0]
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {kernel_size}")
        if hidden < channels:
            raise ValueError(f"hidden must be at least the {channels} data channels, got "
                             f"{hidden}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.gated = gated
        hidden_groups = channel_groups(hidden, channels)
        if gated:
            self.layers = nn.ModuleList(
                GatedLayer(channels if i == 0 else hidden, hidden, channels, kernel_size,
                           first=i == 0, dropout=dropout) for i in range(layers))
        else:
            reach = kernel_size // 2
            square = (kernel_size, kernel_size)
            edges = (reach,) * 4
            first = PaddedConv2d(channels, hidden, square, edges, raster_mask(
                hidden_groups, torch.arange(channels), kernel_size, own=False))
            rest = [PaddedConv2d(hidden, hidden, square, edges, raster_mask(
                hidden_groups, hidden_groups, kernel_size, own=True))
                for _ in range(layers - 1)]
            self.layers = nn.ModuleList([first, *rest])
            self.dropout = nn.Dropout(dropout)
        width = 4 * hidden if gated else hidden
        self.condition_projections = (
            nn.ModuleList(nn.Linear(condition_dim, width) for _ in range(layers))
            if condition_dim else None)
        out_groups = torch.arange(param_channels * channels) % channels  # "(p c)" layout
        self.head = nn.Sequential(
            nn.ELU(),
            PaddedConv2d(hidden, hidden, (1, 1),
                         mask=row_mask(hidden_groups, hidden_groups, 1, own=True)),
            nn.ELU(),
            PaddedConv2d(hidden, param_channels * channels, (1, 1),
                         mask=row_mask(out_groups, hidden_groups, 1, own=True)),
        )

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        if (condition is None) != (self.condition_projections is None):
            raise ValueError("this PixelCNN was built " + (
                "with condition_dim: pass the encoded condition" if condition is None
                else "without condition_dim: it takes no condition"))
        biases = ([project(condition.to(x.dtype)) for project in self.condition_projections]
                  if condition is not None else [None] * len(self.layers))
        if self.gated:
            vertical, horizontal = x, x
            for layer, bias in zip(self.layers, biases, strict=True):
                vertical, horizontal = layer(vertical, horizontal, bias)
            features = horizontal
        else:
            features = _biased(self.layers[0](x), biases[0])
            for layer, bias in zip(self.layers[1:], biases[1:], strict=True):
                features = features + _biased(layer(self.dropout(F.elu(features))), bias)
        return self.head(features)


def _biased(features: Tensor, bias: Tensor | None) -> Tensor:
    return features if bias is None else features + bias[:, :, None, None]
