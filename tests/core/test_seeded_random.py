"""Seeded draws come from the generator's own device, so a CPU seed drives any device."""

from __future__ import annotations

import pytest
import torch

from dgm import seeded_random


@pytest.mark.parametrize("draw", [
    lambda g, device: seeded_random.randn((3, 4), g, device),
    lambda g, device: seeded_random.rand((3, 4), g, device),
    lambda g, device: seeded_random.randint(10, (3, 4), g, device),
])
def test_a_draw_for_another_device_consumes_the_cpu_generator_and_lands_there(draw):
    """On 'meta' (which stands in for CUDA: neither is the CPU generator's device) the
    noise is drawn on the CPU generator and moved, so the generator advances exactly as
    a CPU draw would; torch.randn(generator=cpu, device='cuda') would raise instead."""
    g_other, g_cpu = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = draw(g_other, "meta")
    same_on_cpu = draw(g_cpu, "cpu")
    assert out.device.type == "meta" and out.shape == same_on_cpu.shape
    assert out.dtype == same_on_cpu.dtype
    assert torch.equal(torch.rand(5, generator=g_other), torch.rand(5, generator=g_cpu))


def test_draws_match_torch_with_the_same_seed_and_follow_dtype():
    x = seeded_random.randn((2, 3), torch.Generator().manual_seed(0), "cpu", torch.float64)
    assert x.dtype == torch.float64
    assert torch.equal(x, torch.randn(2, 3, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64))
    assert seeded_random.rand((4,), None, "cpu").shape == (4,)
