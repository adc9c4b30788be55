"""Core denoisers: the 1-D conv denoiser learns signals that the MLP denoiser does not."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dgm.contract import DataInfo
from dgm.denoisers import Conv1dDenoiser, MLPDenoiser
from dgm.families.diffusion import Diffusion
from dgm.metrics import kernel_mmd

INFO = DataInfo("test:signal", (1, 32))


def sines(n: int, seed: int) -> torch.Tensor:
    """Sine waves of one frequency and random phase, shaped (n, 1, 32)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, 32)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    return (0.8 * torch.sin(2 * math.pi * 2 * t + phase)).unsqueeze(1)


def held_out_loss(family: Diffusion, x: torch.Tensor) -> float:
    """The epsilon-prediction error on fixed noise and timesteps."""
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    t = torch.randint(0, 100, (x.shape[0],), generator=g)
    with torch.no_grad():
        eps = family.predict(family.scheduler.add_noise(x, noise, t), t)
    return float(((eps - noise) ** 2).mean())


def trained(denoiser: nn.Module, steps: int = 200) -> tuple[Diffusion, float, float]:
    """A diffusion model trained briefly on sines; its held-out loss before and after."""
    family = Diffusion(denoiser, INFO, timesteps=100, sampling_steps=20)
    data, test = sines(512, 0), sines(128, 1)
    before = held_out_loss(family, test)
    optimizer = torch.optim.Adam(family.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss, _ = family.loss({"x": data[torch.randint(0, 512, (64,), generator=g)]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return family.eval(), before, held_out_loss(family, test)


@pytest.mark.slow
def test_the_conv1d_denoiser_learns_sines_better_than_the_mlp_denoiser():
    torch.manual_seed(0)
    conv, before, conv_after = trained(Conv1dDenoiser((1, 32), hidden=32, blocks=3))
    torch.manual_seed(0)
    mlp, _, mlp_after = trained(MLPDenoiser((1, 32), hidden=64))
    assert 0.95 < before < 1.05  # the zero output layer predicts no noise at first
    assert conv_after < 0.15 * before, conv_after
    assert conv_after < 0.6 * mlp_after, (conv_after, mlp_after)
    mmd = kernel_mmd()
    test = sines(128, 1)
    conv_mmd = mmd(conv.sample(128, torch.Generator().manual_seed(3)), test)
    mlp_mmd = mmd(mlp.sample(128, torch.Generator().manual_seed(3)), test)
    assert conv_mmd < 0.6 * mlp_mmd, (conv_mmd, mlp_mmd)


def test_the_conv1d_denoiser_keeps_shapes_takes_a_condition_and_wraps_around():
    net = Conv1dDenoiser((3, 64), hidden=16, blocks=2, condition_dim=4,
                         padding_mode="circular")
    x, labels = torch.randn(5, 3, 64), torch.randn(5, 4)
    t = torch.randint(0, 1000, (5,), dtype=torch.int64)
    assert torch.equal(net(x, t, labels), torch.zeros_like(x))  # the output starts at zero
    nn.init.normal_(net.out[-1].weight, std=0.1)
    out = net(x, t, labels)
    assert out.shape == x.shape and not torch.equal(out, net(x, t, labels.flip(0)))
    assert net(x, torch.tensor(7), labels).shape == x.shape  # a scalar timestep broadcasts
    with pytest.raises(ValueError, match="built with condition_dim"):
        net(x, t, None)
    # circular padding: shifting the signal shifts the output the same way
    torch.testing.assert_close(net(x.roll(5, -1), t, labels), out.roll(5, -1),
                               atol=1e-5, rtol=1e-4)


def test_the_conv1d_denoiser_refuses_other_shapes_and_names_the_alternatives():
    with pytest.raises(ValueError, match="core:mlp-denoiser.*core:unet2d"):
        Conv1dDenoiser((1, 8, 8))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        Conv1dDenoiser((1, 32), kernel_size=4)
