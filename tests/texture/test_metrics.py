"""Seam and copy scores on images whose answers are known."""

from __future__ import annotations

import math

import torch

from dgm_texture.metrics import copy_score, seam_energies, seam_score


def periodic(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth random image that is exactly periodic with its own size."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(height).view(-1, 1) * 2 * math.pi / height
    x = torch.arange(width).view(1, -1) * 2 * math.pi / width
    img = torch.zeros(height, width)
    for ky in range(1, 6):
        for kx in range(1, 6):
            a, p = torch.randn(2, generator=g)
            img += a / (ky + kx) * torch.cos(ky * y + kx * x + p)
    return (img / img.abs().max()).view(1, 1, height, width)


def test_a_periodic_image_has_no_seam_and_a_ramp_has_one():
    assert abs(seam_score(periodic()) - 1) < 0.3
    ramp = torch.linspace(-1, 1, 64).view(1, 1, 1, 64).expand(1, 1, 48, 64)
    ramp = ramp + 0.01 * torch.randn(1, 1, 48, 64, generator=torch.Generator().manual_seed(1))
    assert seam_score(ramp) > 20


def test_seam_energies_are_normalised_to_the_interior():
    interior, seam = seam_energies(periodic())
    assert interior.shape == (63 + 47,) and torch.allclose(interior[:63].mean(),
                                                           torch.tensor(1.0, dtype=interior.dtype))
    assert seam.shape == (2,)


def test_the_seam_is_compared_with_interior_borders_of_its_phase():
    """Block artefacts of period 4 (as 4x up-sampling leaves): every 4th column border is
    strong. A periodic image has the same strong border at the seam, which only the
    phase-matched comparison calls seamless."""
    x = periodic(48, 64)  # brighter columns 0, 4, 8, ...: still periodic, strong borders
    x = x + torch.where(torch.arange(64) % 4 == 0, 0.3, 0.0).view(1, 1, 1, 64)
    assert seam_score(x, period=1) > 1.5
    assert abs(seam_score(x, period=4) - 1) < 0.2


def test_copy_score_is_one_for_cut_out_patches_and_zero_for_noise():
    g = torch.Generator().manual_seed(0)
    exemplar = torch.rand(1, 1, 40, 40, generator=g) * 2 - 1
    copied = exemplar[..., 5:37, 3:35].flip(-1)  # a flipped copy still counts
    assert copy_score(copied, exemplar, patch_size=8, queries=64) == 1.0
    noise = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    assert copy_score(noise, exemplar, patch_size=8, queries=64) == 0.0
    slightly_off = (copied + 0.05).clamp(-1, 1)
    assert copy_score(slightly_off, exemplar, patch_size=8, queries=64) == 0.0
