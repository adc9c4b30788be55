"""Denoiser networks for images: diffusers' UNet2DModel, sized by the recipe."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

PaddingMode = Literal["zeros", "circular"]


class UNetDenoiser(nn.Module):
    """``UNet2DModel`` called as ``denoiser(x_t, t, class_labels)``.

    ``channels`` gives the width of each resolution level (each level after the first
    halves H and W); ``attention`` marks the levels with self-attention (default: every
    level below the input resolution). ``padding_mode = "circular"`` makes every
    convolution wrap around the borders, so outputs tile seamlessly.
    """

    def __init__(self, data_shape: tuple[int, ...], channels: list[int] | None = None,
                 layers_per_block: int = 2, attention: list[bool] | None = None,
                 norm_groups: int = 32, dropout: float = 0.0, num_classes: int | None = None,
                 padding_mode: PaddingMode = "zeros", attention_head_dim: int = 8) -> None:
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
            norm_num_groups=norm_groups, dropout=dropout, num_class_embeds=num_classes,
            attention_head_dim=attention_head_dim,
        )
        self.padding_mode = padding_mode
        if padding_mode != "zeros":
            for module in self.unet.modules():
                if isinstance(module, nn.Conv2d):
                    module.padding_mode = padding_mode

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.unet(x, t.to(torch.long), class_labels=class_labels).sample
