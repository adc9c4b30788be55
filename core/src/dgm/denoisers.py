"""Denoiser networks for diffusion, called as ``denoiser(x_t, t, condition)`` with
``t`` an int64 tensor (B,) of timesteps in 0..T-1 and ``condition`` the encoded
condition (B, condition_dim) of a conditional model, or None: diffusers' UNet2DModel for
any (C, H, W) array (images, log-mel spectrograms), a residual 1-D conv network for
(C, L) signals, and a residual MLP for flat vectors (latents). Modalities name them as
their defaults."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

PaddingMode = Literal["zeros", "circular"]


class UNet2DDenoiser(nn.Module):
    """``UNet2DModel`` called as ``denoiser(x_t, t, condition)``; the encoded condition is
    projected to the time embedding's width and added to it (the UNet's "identity" class
    embedding).

    ``channels`` gives the width of each resolution level (each level after the first
    halves H and W); ``attention`` marks the levels with self-attention (default: every
    level below the input resolution). ``padding_mode = "circular"`` makes every
    convolution wrap around the borders, so outputs tile seamlessly.
    """

    capabilities = frozenset({"fully-convolutional", "gradient-checkpointing"})

    def __init__(self, data_shape: tuple[int, ...], channels: list[int] | None = None,
                 layers_per_block: int = 2, attention: list[bool] | None = None,
                 norm_groups: int = 32, dropout: float = 0.0, condition_dim: int = 0,
                 padding_mode: PaddingMode = "zeros", attention_head_dim: int = 8,
                 mid_attention: bool = True) -> None:
        from diffusers import UNet2DModel  # imported here: it takes seconds

        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"the UNet needs (C, H, W) images, got data shape {data_shape}")
        channels = list(channels or [64, 128])
        levels = len(channels)
        attention = list(attention if attention is not None
                         else [False] + [True] * (levels - 1))
        if len(attention) != levels:
            raise ValueError(f"attention has {len(attention)} entries but channels has "
                             f"{levels}; give one true/false per level")
        c, h, w = data_shape
        factor = 2 ** (levels - 1)
        if h % factor or w % factor:
            raise ValueError(f"a UNet with {levels} levels needs H and W divisible by "
                             f"{factor}; data is {h}x{w}: use fewer channels entries")
        bad = [ch for ch in channels if ch % norm_groups]
        if bad:
            raise ValueError(f"every channels entry must be divisible by norm_groups="
                             f"{norm_groups}; {bad} are not")
        if padding_mode not in ("zeros", "circular"):
            raise ValueError(f"padding_mode must be 'zeros' or 'circular', got "
                             f"{padding_mode!r}")
        self.unet = UNet2DModel(
            sample_size=(h, w), in_channels=c, out_channels=c,
            block_out_channels=tuple(channels), layers_per_block=layers_per_block,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D"
                                   for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D"
                                 for a in reversed(attention)),
            norm_num_groups=norm_groups, dropout=dropout,
            class_embed_type="identity" if condition_dim else None,
            attention_head_dim=attention_head_dim, add_attention=mid_attention,
        )
        self.condition_projection = (nn.Linear(condition_dim, 4 * channels[0])
                                     if condition_dim else None)
        self.padding_mode = padding_mode
        self.size_multiple = factor
        """Sampling sizes must have H and W divisible by this (the total down-sampling)."""
        if padding_mode != "zeros":
            for module in self.unet.modules():
                if isinstance(module, nn.Conv2d):
                    module.padding_mode = padding_mode

    def enable_gradient_checkpointing(self) -> None:
        """diffusers' own: each block's activations are recomputed in the backward pass."""
        self.unet.enable_gradient_checkpointing()

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        added = None
        if self.condition_projection is not None:
            if condition is None:
                raise ValueError("this UNet was built with condition_dim; pass the encoded "
                                 "condition")
            added = self.condition_projection(condition.to(x.dtype))
        return self.unet(x, t.to(torch.long), class_labels=added).sample


def embed_condition(net: nn.Module, x: Tensor, t: Tensor,
                    condition: Tensor | None) -> Tensor:
    """The time (and condition) embedding of a denoiser with ``time_proj``, ``time_embed``
    and ``condition_embed`` (None when unconditional) modules: ``(B, hidden)``."""
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    emb = net.time_embed(net.time_proj(t).to(x.dtype))
    if net.condition_embed is not None:
        if condition is None:
            raise ValueError(f"this {type(net).__name__} was built with condition_dim; pass "
                             "the encoded condition")
        emb = emb + net.condition_embed(condition.to(x.dtype))
    return emb


class MLPDenoiser(nn.Module):
    """A residual MLP denoiser for vectors: ``denoiser(x_t, t, condition)``. Time (and the
    encoded condition) enter through diffusers' sinusoidal embedding and a learned
    projection."""

    def __init__(self, data_shape: tuple[int, ...], hidden: int = 256, blocks: int = 3,
                 condition_dim: int = 0, dropout: float = 0.0) -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        if hidden < 2 or blocks < 1:
            raise ValueError(f"hidden must be >= 2 and blocks >= 1, got {hidden}, {blocks}")
        dims = math.prod(data_shape)
        self.data_shape = tuple(data_shape)
        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(hidden, hidden)
        self.condition_embed = nn.Linear(condition_dim, hidden) if condition_dim else None
        self.inp = nn.Linear(dims, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                          nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden))
            for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dims))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        emb = embed_condition(self, x, t, condition)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h).reshape(x.shape)


class Conv1dDenoiser(nn.Module):
    """A residual 1-D conv denoiser for signals shaped (C, L): ``denoiser(x_t, t,
    condition)``. Each of ``blocks`` residual blocks holds two convolutions of width
    ``hidden``, the second dilated by 1, 2, 4, 8, 1, ... so the receptive field grows
    quickly; time (diffusers' sinusoidal embedding and a learned projection) and the
    optional encoded condition enter every block. The output layer starts at zero. ``padding_mode =
    "circular"`` wraps the convolutions around the ends (periodic signals)."""

    def __init__(self, data_shape: tuple[int, ...], hidden: int = 64, blocks: int = 4,
                 kernel_size: int = 5, condition_dim: int = 0, dropout: float = 0.0,
                 padding_mode: PaddingMode = "zeros") -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        if len(data_shape) != 2:
            raise ValueError(f"the 1-D conv denoiser needs (C, L) signals, got data shape "
                             f"{tuple(data_shape)}; use core:mlp-denoiser for flat vectors "
                             "or core:unet2d for (C, H, W) arrays")
        if hidden < 2 or blocks < 1:
            raise ValueError(f"hidden must be >= 2 and blocks >= 1, got {hidden}, {blocks}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the output keeps the length), got "
                             f"{kernel_size}")
        if padding_mode not in ("zeros", "circular"):
            raise ValueError(f"padding_mode must be 'zeros' or 'circular', got "
                             f"{padding_mode!r}")
        channels = data_shape[0]
        embed = 4 * hidden
        groups = math.gcd(hidden, 8)

        def conv(c_in: int, c_out: int, dilation: int = 1) -> nn.Conv1d:
            return nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation,
                             padding=dilation * (kernel_size - 1) // 2,
                             padding_mode=padding_mode)

        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(hidden, embed)
        self.condition_embed = nn.Linear(condition_dim, embed) if condition_dim else None
        self.inp = conv(channels, hidden)
        self.first = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(groups, hidden), nn.SiLU(), conv(hidden, hidden))
            for _ in range(blocks))
        self.emb = nn.ModuleList(nn.Linear(embed, hidden) for _ in range(blocks))
        self.second = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(groups, hidden), nn.SiLU(), nn.Dropout(dropout),
                          conv(hidden, hidden, dilation=2 ** (i % 4)))
            for i in range(blocks))
        self.out = nn.Sequential(nn.GroupNorm(groups, hidden), nn.SiLU(),
                                 conv(hidden, channels))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        emb = nn.functional.silu(embed_condition(self, x, t, condition))
        h = self.inp(x)
        for first, project, second in zip(self.first, self.emb, self.second, strict=True):
            h = h + second(first(h) + project(emb)[:, :, None])
        return self.out(h)
