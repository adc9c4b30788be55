"""Seamless, any-size texture networks.

Generators and denoisers are fully convolutional with circular (toroidal) padding in
every convolution, so the output of a noise map is periodic with the output's own size:
a sample tiles with no seam, at any size the network's down- or up-sampling allows
(``size_multiple``). The critic uses unpadded ("valid") convolutions: it never sees a
border, neither zeros nor a wrap, so it cannot tell periodic samples from crops of the
photograph by their edges.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.denoisers import UNet2DDenoiser

PaddingMode = Literal["circular", "zeros", "reflect", "replicate"]
Norm = Literal["batch", "group", "none"]


def texture_unet(data_shape: tuple[int, ...], channels: list[int] | None = None,
                 layers_per_block: int = 1, norm_groups: int = 16, dropout: float = 0.0,
                 condition_dim: int = 0,
                 padding_mode: Literal["circular", "zeros"] = "circular") -> UNet2DDenoiser:
    """diffusers' UNet2DModel with no attention anywhere (global attention would tie
    every pixel to every other and cost the square of the pixel count) and circular
    padding in every convolution. Any H and W divisible by 2 ** (len(channels) - 1)."""
    channels = list(channels or [32, 64, 128])
    return UNet2DDenoiser(data_shape, channels=channels, layers_per_block=layers_per_block,
                          attention=[False] * len(channels), norm_groups=norm_groups,
                          dropout=dropout, condition_dim=condition_dim, padding_mode=padding_mode,
                          mid_attention=False)


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


class SpatialGenerator(nn.Module):
    """A spatial GAN generator (Jetchev et al. 2016): a noise map z of shape
    (latent_dim, H / 2^k, W / 2^k) to an image (C, H, W) in [-1, 1].

    A 3x3 convolution lifts z to ``channels[0]``; then k = len(channels) - 1 stages each
    up-sample by 2 (nearest) and apply two 3x3 convolutions (normalised, ReLU) to the next
    width; a last 3x3 convolution and tanh give the image. Every convolution pads with
    ``padding_mode`` (circular: the image is periodic with its own size).

    With ``noise_injection`` each stage also adds one channel of per-pixel noise at its
    own resolution, scaled per channel by learned weights that start at zero (as in
    StyleGAN, Karras et al. 2019): fine detail then need not be derived from the coarse
    map, whose blocks otherwise show as a pattern with the period of the up-sampling.
    All noise comes from z, so sampling stays seeded: z is then one full-resolution map
    of ``latent_dim`` + stages channels, and each scale's noise is a channel's block
    mean rescaled to unit variance (periodic whenever z is).
    """

    capabilities = frozenset({"fully-convolutional", "spatial-latents"})

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int = 16,
                 channels: list[int] | None = None, norm: Norm = "group",
                 padding_mode: PaddingMode = "circular", noise_injection: bool = False
                 ) -> None:
        super().__init__()
        channels = list(channels or [128, 128, 64, 32, 16])
        if len(data_shape) != 3:
            raise ValueError(f"texture generators make (C, H, W) images, not {data_shape}")
        self.stages = len(channels) - 1
        self.size_multiple = 2 ** self.stages
        """Output H and W must be divisible by this (one noise pixel per block)."""
        self.latent_dim = latent_dim
        height, width = data_shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"a spatial generator with {len(channels)} channels entries "
                             f"up-samples {self.size_multiple}x; the training crop "
                             f"{width}x{height} must be divisible by it")

        def conv(c_in: int, c_out: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode)

        layers: list[nn.Module] = [conv(latent_dim, channels[0]), _norm(norm, channels[0]),
                                   nn.ReLU()]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       conv(c_in, c_out), _norm(norm, c_out), nn.ReLU(),
                       conv(c_out, c_out), _norm(norm, c_out), nn.ReLU()]
        layers += [conv(channels[-1], data_shape[0]), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.noise_injection = noise_injection
        self.noise_scales = nn.ParameterList(
            nn.Parameter(torch.zeros(1, c, 1, 1)) for c in channels[1:]
        ) if noise_injection else None

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The noise map for an output of ``data_shape``."""
        height, width = data_shape[-2] // self.size_multiple, data_shape[-1] // self.size_multiple
        if self.noise_injection:
            return (self.latent_dim + self.stages, height * self.size_multiple,
                    width * self.size_multiple)
        return (self.latent_dim, height, width)

    def forward(self, z: Tensor) -> Tensor:
        if self.noise_scales is None:
            return self.net(z)
        h = self.net[:3](_block_noise(z[:, :self.latent_dim], self.size_multiple))
        for stage, scale in enumerate(self.noise_scales):
            first = 3 + 7 * stage  # up-sample, conv, norm, ReLU, conv | norm, ReLU
            h = self.net[first:first + 5](h)
            channel = z[:, self.latent_dim + stage:self.latent_dim + stage + 1]
            h = h + scale * _block_noise(channel, 2 ** (self.stages - 1 - stage))
            h = self.net[first + 5:first + 7](h)
        return self.net[-2:](h)


def _block_noise(z: Tensor, factor: int) -> Tensor:
    """Means of ``factor`` x ``factor`` blocks of unit normal noise, times ``factor``: unit
    normal noise at 1/factor of the resolution."""
    return z if factor == 1 else F.avg_pool2d(z, factor) * factor


class PatchCritic(nn.Module):
    """A fully convolutional critic: unpadded stride-2 4x4 convolutions with LeakyReLU
    (no normalisation, so per-example gradient penalties hold), a 1x1 convolution to a map
    of patch scores, and their mean as the example's score."""

    def __init__(self, data_shape: tuple[int, ...], channels: list[int] | None = None,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        channels = list(channels or [32, 64, 128, 256])
        size = min(data_shape[-2:])
        for _ in channels:
            size = (size - 4) // 2 + 1
        if size < 1:
            raise ValueError(f"a patch critic with {len(channels)} stride-2 layers needs "
                             f"crops larger than {min(data_shape[-2:])} pixels; use fewer "
                             "channels entries")
        layers: list[nn.Module] = []
        c_in = data_shape[0]
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2), nn.LeakyReLU(negative_slope)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).mean(dim=(1, 2, 3))
