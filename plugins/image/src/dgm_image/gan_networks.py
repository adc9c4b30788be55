"""DCGAN-style generator and critic for images (Radford et al. 2016), any (C, H, W)
with H and W divisible by 2 ** len(channels)."""

from __future__ import annotations

from typing import Literal

from einops.layers.torch import Rearrange
from torch import Tensor, nn

from dgm_image.networks import stage_map_size

Norm = Literal["batch", "layer", "none"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {kind!r}")


class DCGANGenerator(nn.Module):
    """z to an image in [-1, 1]: a linear map to a (channels[0], H/2^s, W/2^s) feature
    map, then s = len(channels) stride-2 transposed convolutions (normalised, ReLU)
    through the remaining ``channels``, the last to the image's channels, then tanh."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int,
                 channels: list[int] | None = None, norm: Norm = "batch") -> None:
        super().__init__()
        channels = channels or [128, 64]
        h, w = stage_map_size(data_shape, len(channels), "DCGAN generators")
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, channels[0] * h * w),
            Rearrange("b (c h w) -> b c h w", c=channels[0], h=h),
            _norm(norm, channels[0]), nn.ReLU()]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                       _norm(norm, c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], data_shape[0], 4, stride=2, padding=1),
                   nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DCGANCritic(nn.Module):
    """An image to one score: stride-2 convolutions (one per ``channels`` entry) with
    LeakyReLU and no batch norm (so scores of examples stay independent, as gradient
    penalties assume), then a linear head."""

    def __init__(self, data_shape: tuple[int, ...], channels: list[int] | None = None,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        channels = channels or [64, 128]
        h, w = stage_map_size(data_shape, len(channels), "DCGAN critics")
        layers: list[nn.Module] = []
        c_in = data_shape[0]
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
                       nn.LeakyReLU(negative_slope)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * h * w, 1),
                                 Rearrange("b 1 -> b"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
