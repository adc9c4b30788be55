"""The autoregressive family with PixelCNN networks, and the categorical and mixture
likelihoods: exact normalisation, causality of the masks, ancestral sampling, training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dgm.assembly import build_data, build_family
from dgm.errors import RecipeError
from dgm.families.autoregressive import Autoregressive
from dgm.likelihoods import Categorical, DiscretizedLogisticMixture
from dgm.recipes import Recipe
from dgm_image.pixelcnn import PixelCNN


def tiny_model(shape, likelihood, gated=True, layers=3, hidden=6, seed=0) -> Autoregressive:
    torch.manual_seed(seed)
    net = PixelCNN(shape, likelihood.param_channels, hidden=hidden, layers=layers,
                   gated=gated)
    return Autoregressive(net, likelihood, shape).double().eval()


def every_image(shape, levels) -> torch.Tensor:
    """All images of ``shape`` whose values lie on the ``levels``-level grid."""
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64)
    dims = torch.Size(shape).numel()
    values = torch.tensor(list(itertools.product(range(levels), repeat=dims)))
    return grid[values].reshape(-1, *shape)


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize(("shape", "likelihood"), [
    ((1, 2, 2), Categorical(2)),
    ((1, 2, 2), Categorical(3)),
    ((3, 2, 2), Categorical(2)),
    ((2, 2, 2), DiscretizedLogisticMixture(levels=3, components=2)),
], ids=["1ch-2lvl", "1ch-3lvl", "3ch-2lvl", "2ch-mixture"])
def test_exact_likelihood_sums_to_one_over_every_image(shape, likelihood, gated):
    model = tiny_model(shape, likelihood, gated=gated)
    images = every_image(shape, likelihood.levels)
    log_p = model.log_likelihood(images).values
    assert abs(log_p.exp().sum().item() - 1) < 1e-5
    assert log_p.std() > 0.01  # the model is not uniform, so the sum tests something


def raster_index(c: int, h: int, w: int, shape) -> int:
    channels, _, width = shape
    return (h * width + w) * channels + c


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_params_depend_only_on_earlier_elements(channels, gated):
    shape = (channels, 4, 4)
    param_channels = 2
    torch.manual_seed(0)
    net = PixelCNN(shape, param_channels, hidden=6, layers=4, gated=gated).double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64, requires_grad=True)
    out = net(x)
    for c, h, w in itertools.product(*(range(s) for s in shape)):
        i = raster_index(c, h, w, shape)
        (grad,) = torch.autograd.grad(out[0, c::channels, h, w].sum(), x, retain_graph=True)
        seen = torch.zeros(shape, dtype=torch.bool)
        for cj, hj, wj in itertools.product(*(range(s) for s in shape)):
            seen[cj, hj, wj] = grad[0, cj, hj, wj] != 0
            if raster_index(cj, hj, wj, shape) >= i:
                assert not seen[cj, hj, wj], f"element {i} sees element ({cj}, {hj}, {wj})"
        if i > 0:
            assert seen.any()
        if gated and i > 0:  # no blind spot: every earlier element is in view
            earlier = torch.zeros(shape, dtype=torch.bool)
            for cj, hj, wj in itertools.product(*(range(s) for s in shape)):
                earlier[cj, hj, wj] = raster_index(cj, hj, wj, shape) < i
            assert torch.equal(seen, earlier), f"element {i} has a blind spot"


def test_ancestral_samples_follow_the_model_distribution():
    shape = (2, 1, 2)
    model = tiny_model(shape, Categorical(2), seed=1)
    with torch.no_grad():
        model.network.head[-1].weight.mul_(10)  # a peaked, input-dependent model
    images = every_image(shape, 2)
    exact = model.log_likelihood(images).values.exp()
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    matches = (samples.flatten(1)[:, None, :] == images.flatten(1)[None]).all(-1)
    assert matches.sum(1).eq(1).all()  # every sample is one of the images
    frequencies = matches.double().mean(0)
    assert exact.max() - exact.min() > 0.1
    assert (frequencies - exact).abs().max() < 0.015


@pytest.mark.parametrize("channels", [1, 3])
def test_samples_lie_on_the_grid_and_repeat_under_a_seed(channels):
    model = tiny_model((channels, 3, 3), Categorical(17)).float()
    a = model.sample(4, generator=torch.Generator().manual_seed(5))
    b = model.sample(4, generator=torch.Generator().manual_seed(5))
    c = model.sample(4, generator=torch.Generator().manual_seed(6))
    assert a.shape == (4, channels, 3, 3)
    assert torch.isin(a, torch.linspace(-1, 1, 17)).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def digits_model(host, **network):
    recipe = Recipe({
        "data": {"name": "image:digits"},
        "family": {"name": "core:autoregressive"},
        "likelihood": {"name": "core:categorical"},
        "networks": {"autoregressive": {"hidden": 16, "layers": 2, **network}},
    }, "test")
    data = build_data(recipe, host.registry, "train")
    torch.manual_seed(0)
    return build_family(recipe, host.registry, data.info), data


def test_training_lowers_the_exact_nll(host):
    model, data = digits_model(host)
    assert model.likelihood.levels == 17  # taken from the data
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        batch = data.images[torch.randint(0, len(data), (32,), generator=g)]
        loss, _ = model.loss({"x": batch})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    model.eval()
    result = model.log_likelihood(data.images[:8])
    assert result.kind == "exact" and result.method == "autoregressive, exact"
    loss, logs = model.loss({"x": data.images[:8]})
    torch.testing.assert_close(-result.values.mean(), loss)
    torch.testing.assert_close(logs["bits_per_dim"], loss / (64 * math.log(2)))


def test_bad_network_settings_name_the_recipe_table(host):
    with pytest.raises(RecipeError, match=r"\[networks.autoregressive\].*kernel_size"):
        digits_model(host, kernel_size=4)


def test_categorical_matches_softmax_and_rejects_off_grid_data():
    lik = Categorical(5)
    logits = torch.randn(3, 5 * 2, 1, 1, dtype=torch.float64)  # 2 channels, "(p c)"
    grid = torch.linspace(-1, 1, 5, dtype=torch.float64)
    probs = torch.softmax(logits.view(3, 5, 2), dim=1)  # (B, levels, C)
    x = grid[torch.tensor([[0, 4], [2, 1], [3, 3]])].view(3, 2, 1, 1)
    index = torch.tensor([[0, 4], [2, 1], [3, 3]])
    expected = probs.gather(1, index[:, None]).squeeze(1).log().sum(1)
    torch.testing.assert_close(lik.log_prob(logits, x), expected)
    torch.testing.assert_close(lik.mean(logits).flatten(1), (probs * grid[:, None]).sum(1))
    lik.check_data(x)
    with pytest.raises(ValueError, match="5-level grid"):
        lik.check_data(torch.tensor([0.1, 0.5]))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        lik.check_data(torch.tensor([1.5]))


def test_categorical_samples_have_the_stated_frequencies():
    lik = Categorical(4)
    logits = torch.tensor([0.5, -1.0, 2.0, -3.0]).view(1, 4, 1, 1).expand(1, 4, 200, 200)
    s = lik.sample(logits, torch.Generator().manual_seed(0))
    expected = torch.softmax(torch.tensor([0.5, -1.0, 2.0, -3.0]), 0)
    for value, p in zip(torch.linspace(-1, 1, 4), expected):
        assert abs((s == value).float().mean().item() - p.item()) < 0.01


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_mixture_mass_sums_to_one_and_its_mean_is_the_expectation(levels):
    lik = DiscretizedLogisticMixture(levels, components=3)
    torch.manual_seed(levels)
    params = torch.cat([torch.randn(6, 3, 1, 1), torch.randn(6, 3, 1, 1) * 0.8,
                        torch.randn(6, 3, 1, 1) - 2], 1)
    grid = torch.linspace(-1, 1, levels)
    masses = torch.stack([lik.log_prob(params, g.expand(6, 1, 1, 1)) for g in grid]).exp()
    torch.testing.assert_close(masses.sum(0), torch.ones(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(lik.mean(params).flatten(), (masses * grid[:, None]).sum(0),
                               atol=1e-5, rtol=0)


def test_mixture_samples_lie_on_the_grid_with_the_right_frequencies():
    lik = DiscretizedLogisticMixture(5, components=2)
    one = torch.tensor([0.0, 1.0, -0.6, 0.7, -1.5, -2.0]).view(1, 6, 1, 1)
    s = lik.sample(one.expand(1, 6, 300, 300), torch.Generator().manual_seed(0))
    grid = torch.linspace(-1, 1, 5)
    assert torch.isin(s, grid).all()
    for g in grid:
        p = lik.log_prob(one, g.view(1, 1, 1, 1)).exp().item()
        assert abs((s == g).float().mean().item() - p) < 0.01


class CausalSequenceNet(torch.nn.Module):
    """A one-channel causal 1-D conv: input shifted one step right, then left-padded."""

    def __init__(self, param_channels: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, param_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = torch.nn.functional.pad(x, (1, 0))[..., :-1]
        return self.conv(torch.nn.functional.pad(shifted, (2, 0)))


def test_the_family_is_modality_agnostic_over_sequences():
    torch.manual_seed(0)
    likelihood = Categorical(3)
    model = Autoregressive(CausalSequenceNet(3), likelihood, (1, 5)).double()
    log_p = model.log_likelihood(every_image((1, 5), 3)).values
    assert abs(log_p.exp().sum().item() - 1) < 1e-5
    a = model.sample(6, generator=torch.Generator().manual_seed(2))
    assert a.shape == (6, 1, 5) and torch.isin(a, likelihood.grid.values(dtype=a.dtype)).all()
    assert torch.equal(a, model.sample(6, generator=torch.Generator().manual_seed(2)))
