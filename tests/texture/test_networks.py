"""Texture networks: circular padding in every convolution, outputs exactly periodic by
construction, any size the architecture allows and a clear error where it does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm.sizes import parse_size, sample_shape
from dgm_texture.networks import PatchCritic, SpatialGenerator, texture_unet
from dgm_texture.previews import tile


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_every_conv_of_the_generator_and_denoiser_pads_circularly():
    generator = SpatialGenerator((1, 32, 32), latent_dim=4, channels=[16, 16, 8])
    unet = texture_unet((1, 32, 32), channels=[16, 16, 16], norm_groups=8)
    for net in (generator, unet):
        padded = [c for c in convs(net) if c.padding != (0, 0)]
        assert padded and all(c.padding_mode == "circular" for c in padded)
    assert all(c.padding == (0, 0) or c.padding_mode == "circular" for c in convs(unet))
    # the critic never pads: it sees no border, neither zeros nor a wrap
    assert all(c.padding == (0, 0) for c in convs(PatchCritic((1, 32, 32), [8, 16])))


def test_no_attention_anywhere_in_the_texture_unet():
    unet = texture_unet((1, 32, 32), channels=[16, 16], norm_groups=8)
    names = {type(m).__name__ for m in unet.modules()}
    assert not any("Attention" in n or "Attn" in n for n in names), names


@torch.no_grad()
def test_generator_output_of_a_tiled_noise_map_is_the_tiled_output():
    torch.manual_seed(0)
    generator = SpatialGenerator((1, 32, 32), latent_dim=4, channels=[16, 16, 8]).eval()
    z = torch.randn(2, 4, 8, 12)
    x = generator(z)
    assert x.shape == (2, 1, 32, 48)
    assert torch.allclose(generator(tile(z)), tile(x), atol=1e-5)


@torch.no_grad()
def test_noise_injection_draws_every_scale_from_one_periodic_noise_map():
    torch.manual_seed(0)
    generator = SpatialGenerator((1, 32, 32), latent_dim=4, channels=[16, 16, 8],
                                 noise_injection=True).eval()
    assert generator.latent_shape((1, 32, 48)) == (4 + 2, 32, 48)  # full res, 2 stages
    for scale in generator.noise_scales:
        nn.init.normal_(scale)  # trained weights: the noise reaches the output
    z = torch.randn(2, 6, 32, 48)
    x = generator(z)
    assert x.shape == (2, 1, 32, 48)
    assert torch.allclose(generator(tile(z)), tile(x), atol=1e-5)
    finest = z.clone()
    finest[:, -1] = torch.randn(2, 32, 48)  # only the full-resolution noise channel
    changed = (generator(finest) - x).abs()
    assert changed.mean() > 1e-3
    for scale in generator.noise_scales:
        nn.init.zeros_(scale)  # as initialised: the per-pixel noise is not used yet
    assert torch.equal(generator(finest), generator(z))


@torch.no_grad()
def test_denoiser_commutes_with_tiling_and_circular_shifts():
    torch.manual_seed(0)
    unet = texture_unet((1, 16, 16), channels=[16, 16, 16], norm_groups=8).eval()
    x, t = torch.randn(1, 1, 16, 24), torch.tensor([300])
    out = unet(x, t)
    assert torch.allclose(unet(tile(x), t), tile(out), atol=1e-4)
    shift = unet.size_multiple  # a shift by the total down-sampling factor commutes
    rolled = unet(torch.roll(x, (shift, 2 * shift), dims=(-2, -1)), t)
    assert torch.allclose(rolled, torch.roll(out, (shift, 2 * shift), dims=(-2, -1)),
                          atol=1e-4)


def test_zero_padding_is_not_periodic():
    """The tiling test above can fail: with zero padding the same check breaks."""
    torch.manual_seed(0)
    generator = SpatialGenerator((1, 32, 32), latent_dim=4, channels=[16, 16, 8],
                                 padding_mode="zeros").eval()
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(generator(tile(z)), tile(generator(z)), atol=1e-3)


@pytest.mark.parametrize("size", ["96x64", "64x96", "100x60", "20x8"])
def test_any_size_the_architecture_allows(size):
    height, width = parse_size(size)
    unet = texture_unet((1, 16, 16), channels=[16, 16, 16], norm_groups=8).eval()
    shape = sample_shape((1, 16, 16), (height, width), unet, "denoiser")
    with torch.no_grad():
        out = unet(torch.randn(1, *shape), torch.tensor([10]))
    assert out.shape == (1, 1, height, width)


def test_sizes_the_architecture_cannot_make_are_refused_with_the_nearest():
    unet = texture_unet((1, 16, 16), channels=[16, 16, 16], norm_groups=8)
    with pytest.raises(ValueError, match=r"multiples of 4; 50x30 is not \(nearest: 52x32\)"):
        sample_shape((1, 16, 16), (30, 50), unet, "denoiser")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("1024*768")
    with pytest.raises(ValueError, match="only the training size"):
        sample_shape((1, 16, 16), (32, 32), nn.Linear(1, 1), "denoiser")


def test_generator_crop_must_fit_its_upsampling():
    with pytest.raises(ValueError, match="divisible"):
        SpatialGenerator((1, 30, 30), channels=[16, 16, 8])
    with pytest.raises(ValueError, match="fewer channels entries"):
        PatchCritic((1, 16, 16), channels=[8, 8, 8, 8])
