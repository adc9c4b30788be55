"""One grid for discrete data: the bins the old per-module code used on the digits, the
value range honoured by every discrete likelihood and family, and one binary encoding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm.assembly import BuildContext, build_modality
from dgm.contract import DataInfo, Grid
from dgm.families.gan import GAN
from dgm.likelihoods import Bernoulli, Categorical, DiscretizedLogistic
from dgm.priors import StandardNormal
from dgm.recipes import Recipe
from dgm_image.datasets import digits

BINARY = DataInfo("image:image", (1, 2, 2), levels=2, value_range=(0.0, 1.0))


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_the_grid_gives_the_bins_the_old_code_gave(levels):
    grid = Grid(levels)
    x = torch.rand(50_000, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    k = levels - 1
    old_index = torch.round((x.clamp(-1, 1) + 1) * k / 2).long()  # Categorical's, until now
    old_value = old_index * 2 / k - 1  # DiscretizedLogistic's to_grid, until now
    assert torch.equal(grid.index(x), old_index)
    torch.testing.assert_close(grid.quantize(x), old_value, atol=2e-7, rtol=0)
    assert torch.equal(grid.values(), torch.linspace(-1, 1, levels))
    assert grid.bin_width == pytest.approx(2 / k)


def test_the_digits_lie_on_their_grid_exactly():
    data = digits("test")
    grid = data.info.grid
    assert (grid.levels, grid.low, grid.high, grid.bin_width) == (17, -1.0, 1.0, 0.125)
    assert torch.equal(grid.quantize(data.x), data.x)
    assert torch.equal(grid.values()[grid.index(data.x)], data.x)


def test_binary_data_has_one_encoding_that_every_discrete_likelihood_sums_to_one_on(host):
    ctx = BuildContext(Recipe({}, "r.toml"), host.registry, BINARY,
                       build_modality(BINARY, host.registry))
    values = BINARY.grid.values().view(-1, 1)
    for name in ("core:categorical", "core:discretized-logistic",
                 "core:discretized-logistic-mixture", "core:bernoulli"):
        ctx.recipe = Recipe({"likelihood": {"name": name}}, "r.toml")
        likelihood = ctx.likelihood()
        params = torch.randn(1, likelihood.param_channels, generator=torch.Generator()
                             .manual_seed(1)).expand(2, -1)
        total = likelihood.log_prob(params, values).exp().sum()
        assert abs(float(total) - 1) < 1e-5, name
        likelihood.check_data(values)
        with pytest.raises(ValueError):
            likelihood.check_data(values * 2 - 1)  # -1 is not a binary value


def test_bernoulli_refuses_data_on_another_grid():
    with pytest.raises(ValueError, match=r"binary data, the grid \{0, 1\}.*the 2-level grid "
                       r"on \[-1, 1\]"):
        Bernoulli(grid=Grid(2))
    assert Categorical(grid=Grid(5, 0.0, 4.0)).to_value(torch.tensor([3])).item() == 3.0
    assert DiscretizedLogistic(levels=3, grid=Grid(17, 0.0, 1.0)).grid == Grid(3, 0.0, 1.0)


def test_a_gan_keeps_samples_on_the_data_s_range_and_grid():
    generator = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (1, 2, 2)))
    nn.init.normal_(generator[0].weight, std=3.0)
    gan = GAN(generator, nn.Flatten(), StandardNormal((4,)), grid=BINARY.grid,
              value_range=BINARY.value_range)
    samples = gan.sample(64, torch.Generator().manual_seed(0))
    assert set(samples.unique().tolist()) == {0.0, 1.0}


def test_a_flow_on_binary_data_uses_its_bin_width_and_samples_on_the_grid(host):
    from dgm.assembly import build_family

    recipe = Recipe({"data": {"name": "image:digits"}, "family": {"name": "core:flow",
                     "scales": 1, "steps_per_scale": 1},
                     "networks": {"coupling": {"hidden": 4}}}, "r.toml")
    flow = build_family(recipe, host.registry, BINARY)
    assert flow.bin_width == 1.0
    assert set(flow.sample(32, torch.Generator().manual_seed(0)).unique().tolist()) <= {0.0, 1.0}
