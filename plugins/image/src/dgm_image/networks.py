"""Encoders and decoders for images: MLP and strided-conv, any (C, H, W)."""

from __future__ import annotations

import math

from einops.layers.torch import Rearrange
from torch import Tensor, nn


def _mlp(sizes: list[int], activation: type[nn.Module] = nn.SiLU) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation()]
    return layers


class MLPEncoder(nn.Module):
    """Flatten, MLP, then 2 * latent_dim outputs (mean and log-variance of q(z|x))."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int,
                 hidden: list[int] | None = None) -> None:
        super().__init__()
        hidden = hidden or [512, 256]
        self.net = nn.Sequential(nn.Flatten(), *_mlp([math.prod(data_shape), *hidden]),
                                 nn.Linear(hidden[-1], 2 * latent_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """MLP from z to likelihood parameters shaped (param_channels * C, H, W)."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, param_channels: int,
                 hidden: list[int] | None = None) -> None:
        super().__init__()
        hidden = hidden or [256, 512]
        c, h, w = data_shape
        self.net = nn.Sequential(*_mlp([latent_dim, *hidden]),
                                 nn.Linear(hidden[-1], param_channels * c * h * w),
                                 Rearrange("b (c h w) -> b c h w", c=param_channels * c, h=h))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def stage_map_size(data_shape: tuple[int, ...], stages: int,
                   what: str = "conv networks") -> tuple[int, int]:
    """Height and width of the smallest feature map after ``stages`` halvings; a clear
    ValueError when the data is not (C, H, W) or H and W do not divide."""
    if len(data_shape) != 3:
        raise ValueError(f"{what} work on images shaped (C, H, W), got {tuple(data_shape)}")
    if stages < 1:
        raise ValueError(f"{what} need at least one channels entry (one resolution stage)")
    _, h, w = data_shape
    factor = 2**stages
    if h % factor or w % factor:
        raise ValueError(f"{what} with {stages} resolution stages need H and W divisible "
                         f"by {factor}; data is {h}x{w}: use fewer channels entries")
    return h // factor, w // factor


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (one per ``channels`` entry), then a linear head."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int,
                 channels: list[int] | None = None, hidden: int = 256) -> None:
        super().__init__()
        channels = channels or [32, 64]
        h, w = stage_map_size(data_shape, len(channels))
        layers: list[nn.Module] = []
        c_in = data_shape[0]
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * h * w, hidden),
                                 nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """A linear map to a small feature map, then stride-2 transposed convolutions."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, param_channels: int,
                 channels: list[int] | None = None, hidden: int = 256) -> None:
        super().__init__()
        channels = channels or [64, 32]
        h, w = stage_map_size(data_shape, len(channels))
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, channels[0] * h * w),
            nn.SiLU(), Rearrange("b (c h w) -> b c h w", c=channels[0], h=h)]
        c_in = channels[0]
        for c_out in channels[1:]:
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c_out
        layers.append(nn.ConvTranspose2d(c_in, param_channels * data_shape[0], 4, stride=2,
                                         padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
