"""Networks for audio: 1-D conv encoder/decoder for waveforms, 2-D conv encoder/decoder
for log-mel spectrograms (VAE), and a WaveNet-style causal dilated conv stack
(autoregressive). The diffusion denoiser for log-mel is core:unet2d."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.contract import Likelihood


def _check_shape(data_shape: tuple[int, ...], dims: int, what: str) -> None:
    if len(data_shape) != dims + 1:
        shape = "(C, L) waveforms" if dims == 1 else "(C, n_mels, frames) spectrograms"
        raise ValueError(f"{what} needs {shape}, got data shape {tuple(data_shape)}")


class ConvStackEncoder(nn.Module):
    """Strided convolutions (each halves every spatial side), then a linear map to the
    mean and log-variance of q(z | x): ``(B, 2 * latent_dim)``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, channels: list[int],
                 dims: int, stride: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        layers: list[nn.Module] = []
        previous = data_shape[0]
        for width in channels:
            layers += [conv(previous, width, 2 * stride, stride=stride,
                            padding=stride // 2), nn.SiLU()]
            previous = width
        self.body = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.body(torch.zeros(1, *data_shape)).numel()
        self.head = nn.Linear(flat, 2 * latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).flatten(1))


class ConvStackDecoder(nn.Module):
    """A linear map from z to a coarse grid, transposed convolutions up to (at least) the
    data's size, cropped to it: the likelihood's params ``(B, P * C, ...)``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, param_channels: int,
                 channels: list[int], dims: int, stride: int) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.dims = dims
        factor = stride ** len(channels)
        self.coarse = tuple(math.ceil(s / factor) for s in data_shape[1:])
        widths = list(reversed(channels))
        self.fc = nn.Linear(latent_dim, widths[0] * math.prod(self.coarse))
        deconv = nn.ConvTranspose1d if dims == 1 else nn.ConvTranspose2d
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers += [nn.SiLU(), deconv(width, out, 2 * stride, stride=stride,
                                         padding=stride // 2)]
        layers += [nn.SiLU(), conv(widths[-1], param_channels * data_shape[0], 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).reshape(z.shape[0], -1, *self.coarse)
        out = self.body(h)
        crop = tuple(slice(0, s) for s in self.data_shape[1:])
        return out[(slice(None), slice(None), *crop)]


class WaveEncoder(ConvStackEncoder):
    """1-D strided conv encoder for waveforms ``(C, L)``; each layer divides L by
    ``stride``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int,
                 channels: list[int] | None = None, stride: int = 4) -> None:
        _check_shape(data_shape, 1, "audio:wave-encoder")
        super().__init__(data_shape, latent_dim, channels or [32, 64, 64, 128], 1, stride)


class WaveDecoder(ConvStackDecoder):
    """1-D transposed-conv decoder from z to waveform likelihood params."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, param_channels: int = 1,
                 channels: list[int] | None = None, stride: int = 4) -> None:
        _check_shape(data_shape, 1, "audio:wave-decoder")
        super().__init__(data_shape, latent_dim, param_channels,
                         channels or [32, 64, 64, 128], 1, stride)


class MelEncoder(ConvStackEncoder):
    """2-D strided conv encoder for log-mel spectrograms ``(C, n_mels, frames)``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int,
                 channels: list[int] | None = None) -> None:
        _check_shape(data_shape, 2, "audio:mel-encoder")
        super().__init__(data_shape, latent_dim, channels or [32, 64, 128], 2, 2)


class MelDecoder(ConvStackDecoder):
    """2-D transposed-conv decoder from z to log-mel likelihood params."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, param_channels: int = 1,
                 channels: list[int] | None = None) -> None:
        _check_shape(data_shape, 2, "audio:mel-decoder")
        super().__init__(data_shape, latent_dim, param_channels, channels or [32, 64, 128],
                         2, 2)


class GatedResidualBlock(nn.Module):
    """A causal dilated convolution with a tanh * sigmoid gate, a residual output and a
    skip output (van den Oord et al. 2016)."""

    def __init__(self, residual: int, skip: int, kernel_size: int, dilation: int,
                 condition_dim: int = 0) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(residual, 2 * residual, kernel_size, dilation=dilation)
        self.res = nn.Conv1d(residual, residual, 1)
        self.skip = nn.Conv1d(residual, skip, 1)
        self.condition = nn.Linear(condition_dim, 2 * residual) if condition_dim else None

    def forward(self, h: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        features = self.conv(F.pad(h, (self.pad, 0)))
        if condition is not None:
            features = features + self.condition(condition)[..., None]
        filt, gate = features.chunk(2, dim=1)
        out = torch.tanh(filt) * torch.sigmoid(gate)
        return h + self.res(out), self.skip(out)


class WaveNet(nn.Module):
    """Causal map from a waveform ``(B, 1, L)`` (mu-law values in [-1, 1]) to the
    likelihood's params ``(B, P, L)``: the params at sample i see only samples < i (the
    input is shifted right by one, then every convolution is causal).

    Dilations double within a cycle (1, 2, ..., 2**(cycle - 1)) and the cycle repeats
    ``layers / cycle`` times; :attr:`receptive_field` is the number of samples seen.
    With ``condition_dim`` it is called ``network(x, condition)`` and the encoded
    condition biases every gate (WaveNet's global conditioning).
    """

    capabilities = frozenset({"cached-generation"})

    def __init__(self, data_shape: tuple[int, ...], param_channels: int = 256,
                 residual: int = 32, skip: int = 64, layers: int = 10, cycle: int = 10,
                 kernel_size: int = 2, condition_dim: int = 0) -> None:
        super().__init__()
        _check_shape(data_shape, 1, "audio:wavenet")
        if data_shape[0] != 1:
            raise ValueError(f"audio:wavenet models mono audio (1, L); got {data_shape}")
        if layers < 1 or cycle < 1 or kernel_size < 2:
            raise ValueError("layers and cycle must be >= 1 and kernel_size >= 2")
        self.inp = nn.Conv1d(1, residual, 1)
        dilations = [2 ** (i % cycle) for i in range(layers)]
        self.blocks = nn.ModuleList(GatedResidualBlock(residual, skip, kernel_size, d,
                                                       condition_dim) for d in dilations)
        self.conditional = condition_dim > 0
        self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(),
                                 nn.Conv1d(skip, param_channels, 1))
        self.receptive_field = 1 + sum((kernel_size - 1) * d for d in dilations)

    def _check(self, condition: Tensor | None) -> None:
        if (condition is None) == self.conditional:
            raise ValueError("this WaveNet was built " + (
                "with condition_dim: pass the encoded condition" if condition is None
                else "without condition_dim: it takes no condition"))

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        self._check(condition)
        h = self.inp(F.pad(x, (1, 0))[..., :-1])
        skips = 0
        for block in self.blocks:
            h, s = block(h, condition)
            skips = skips + s
        return self.out(skips)

    @torch.no_grad()
    def generate(self, n: int, length: int, likelihood: Likelihood,
                 generator: torch.Generator | None = None,
                 condition: Tensor | None = None) -> Tensor:
        """Ancestral sampling of ``n`` waveforms ``(n, 1, length)`` in one pass over time:
        each layer keeps its past inputs, so a new sample costs one time step of every
        layer instead of a whole forward pass (the fast-WaveNet queue idea). Gives the
        same distribution as sampling through :meth:`forward` one sample at a time."""
        self._check(condition)
        device = self.inp.weight.device
        x = torch.zeros(n, 1, length, device=device)
        histories = [torch.zeros(n, block.conv.in_channels, length, device=device)
                     for block in self.blocks]
        previous = torch.zeros(n, 1, device=device)
        for t in range(length):
            h = F.conv1d(previous[..., None], self.inp.weight, self.inp.bias)[..., 0]
            skips = 0
            for block, history in zip(self.blocks, histories, strict=True):
                history[..., t] = h
                kernel = block.conv.kernel_size[0]
                dilation = block.conv.dilation[0]
                taps = [t - (kernel - 1 - j) * dilation for j in range(kernel)]
                window = torch.stack([history[..., i] if i >= 0 else torch.zeros_like(h)
                                      for i in taps], dim=-1)
                features = torch.einsum("brk,ork->bo", window, block.conv.weight).add(
                    block.conv.bias)
                if condition is not None:
                    features = features + block.condition(condition)
                filt, gate = features.chunk(2, dim=1)
                out = (torch.tanh(filt) * torch.sigmoid(gate))[..., None]
                h = h + block.res(out)[..., 0]
                skips = skips + block.skip(out)
            params = self.out(skips)
            x[..., t:t + 1] = likelihood.sample(params, generator)
            previous = x[..., t]
        return x


__all__ = ["MelDecoder", "MelEncoder", "WaveDecoder", "WaveEncoder", "WaveNet"]
