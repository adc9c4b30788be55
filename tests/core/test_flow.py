"""The normalizing-flow family: exact inverses, log-determinants against brute-force
Jacobians, the dequantization bound's accounting, training, and save/load."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from torch.autograd.functional import jacobian

from dgm.assembly import build_data, build_family
from dgm.errors import RecipeError
from dgm.families.flow import (
    ActNorm,
    AffineCoupling,
    Flow,
    FlowStep,
    InvertibleConv1x1,
    MultiScaleFlow,
    Squeeze,
    VariationalDequantizer,
)
from dgm.recipes import Recipe


def conv_network(spatial_dims: int, zero: bool = False):
    """A one-layer coupling network; random weights unless ``zero``."""
    conv = nn.Conv1d if spatial_dims == 1 else nn.Conv2d

    def make(in_channels: int, out_channels: int) -> nn.Module:
        net = conv(in_channels, out_channels, 3, padding=1)
        if zero:
            nn.init.zeros_(net.weight)
            nn.init.zeros_(net.bias)
        return net

    return make


def brute_force_log_det(layer_forward, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of ``layer_forward`` at each example of ``x``, from autograd."""
    values = []
    for example in x:
        def flat(v, shape=example.shape):
            return layer_forward(v.reshape(1, *shape)).flatten()
        values.append(torch.linalg.slogdet(jacobian(flat, example.flatten()))[1])
    return torch.stack(values)


def perturbed(module: nn.Module) -> nn.Module:
    """Add noise to every parameter, so zero- or identity-initialised layers are not
    trivially invertible."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


SHAPES = [(2, 4, 4), (2, 8)]


def layers_for(shape):
    spatial = len(shape) - 1
    channels = shape[0]
    make = conv_network(spatial)
    return {
        "squeeze": Squeeze(spatial),
        "actnorm": ActNorm(channels),
        "conv1x1": InvertibleConv1x1(channels),
        "coupling": AffineCoupling(channels, make(channels // 2, 2 * (channels - channels // 2))),
        "step": FlowStep(channels, make(channels // 2, 2 * (channels - channels // 2))),
    }


@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "1d"])
@pytest.mark.parametrize("kind", ["squeeze", "actnorm", "conv1x1", "coupling", "step"])
def test_each_layer_inverts_and_reports_its_log_det(kind, shape):
    torch.manual_seed(0)
    layer = layers_for(shape)[kind].double()
    x = torch.randn(3, *shape, dtype=torch.float64) * 2 + 0.5
    layer(x)  # data-dependent initialisation where the layer has one
    perturbed(layer)
    y, log_det = layer(x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    expected = brute_force_log_det(lambda v: layer(v)[0], x)
    assert log_det.shape == (3,)
    assert torch.allclose(log_det, expected, atol=1e-8)


def test_actnorm_initialises_from_its_first_batch_only():
    torch.manual_seed(0)
    layer = ActNorm(3)
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1) + 2
    y, _ = layer(x)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    before = layer.log_scale.detach().clone()
    layer(x * 5)
    assert torch.equal(layer.log_scale.detach(), before)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 16)], ids=["2d", "1d"])
def test_a_multiscale_flow_inverts_and_reports_its_log_det(shape):
    torch.manual_seed(0)
    flow = MultiScaleFlow(shape, conv_network(len(shape) - 1), scales=2, steps_per_scale=2)
    flow = flow.double()
    x = torch.randn(2, *shape, dtype=torch.float64)
    flow(x)
    perturbed(flow)
    latents, log_det = flow(x)
    assert [z.shape[1:] for z in latents] == flow.latent_shapes
    assert sum(math.prod(z.shape[1:]) for z in latents) == math.prod(shape)
    assert torch.allclose(flow.inverse(latents), x, atol=1e-9)
    expected = brute_force_log_det(
        lambda v: torch.cat([z.flatten(1) for z in flow(v)[0]], 1), x)
    assert torch.allclose(log_det, expected, atol=1e-7)


def test_the_variational_dequantizer_reports_log_q_of_its_draw():
    torch.manual_seed(0)
    dequantizer = perturbed(VariationalDequantizer((1, 4, 4), conv_network(2), steps=2))
    dequantizer = dequantizer.double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    noise = torch.randn(2, 4, 2, 2, dtype=torch.float64)
    u, log_q = dequantizer.sample(x, noise)
    assert u.shape == x.shape and (u > 0).all() and (u < 1).all()
    for i in range(2):
        def to_u(v, i=i):
            return dequantizer.sample(x[i:i + 1], v.reshape(1, 4, 2, 2))[0].flatten()
        log_det = torch.linalg.slogdet(jacobian(to_u, noise[i].flatten()))[1]
        log_normal = (-0.5 * noise[i] ** 2 - 0.5 * math.log(2 * math.pi)).sum()
        assert torch.allclose(log_q[i], log_normal - log_det, atol=1e-8)


def gaussian_flow(mean: float, std: float, levels: int | None = 17) -> Flow:
    """A flow whose density is exactly N(mean, std^2) per pixel of an 8x8 image:
    actnorm standardises, the 1x1 convolution rotates, the coupling is the identity."""
    flow = MultiScaleFlow((1, 8, 8), conv_network(2, zero=True), scales=1, steps_per_scale=1)
    actnorm = flow.levels[0][0].actnorm
    with torch.no_grad():
        actnorm.bias.fill_(-mean)
        actnorm.log_scale.fill_(-math.log(std))
        actnorm.initialized.fill_(True)
    return Flow(flow.double(), (1, 8, 8), levels)


def test_the_dequantization_bound_matches_the_mass_of_each_bin():
    torch.manual_seed(0)
    family = gaussian_flow(mean=-0.3, std=0.6)
    grid = torch.linspace(-1, 1, 17, dtype=torch.float64)
    x = grid[torch.randint(0, 17, (4, 1, 8, 8))]
    normal = torch.distributions.Normal(-0.3, 0.6)
    h = 2 / 16
    exact = torch.log(normal.cdf(x + h / 2) - normal.cdf(x - h / 2)).flatten(1).sum(1)
    repeats = x.repeat(64, 1, 1, 1)  # the mean over repeats estimates each expectation
    bound = family.log_likelihood(repeats, k=64).values.view(64, 4).mean(0)
    one_draw = family.log_likelihood(repeats, k=1).values.view(64, 4).mean(0)
    assert (bound <= exact + 0.03).all() and (bound >= exact - 0.05).all()
    assert (one_draw < bound - 0.05).all()


def test_continuous_data_gets_the_exact_density():
    family = gaussian_flow(mean=0.5, std=2.0, levels=None)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    result = family.log_likelihood(x)
    expected = torch.distributions.Normal(0.5, 2.0).log_prob(x).flatten(1).sum(1)
    assert result.kind == "exact" and family.likelihood_kind == "exact"
    assert torch.allclose(result.values, expected, atol=1e-5)


def digits_flow(host, **family):
    recipe = Recipe({
        "data": {"name": "image:digits"},
        "family": {"name": "core:flow", "scales": 2, "steps_per_scale": 2, **family},
        "networks": {"coupling": {"hidden": 16}},
    }, "test")
    data = build_data(recipe, host.registry, "train")
    return recipe, data


def train(family, images, steps):
    opt = torch.optim.Adam(family.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        loss, logs = family.loss({"x": images[torch.randint(0, len(images), (64,), generator=g)]})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["nll_nats"].item())
    return losses


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_training_lowers_the_loss_and_evaluation_is_a_bound(host, dequantization):
    recipe, data = digits_flow(host, dequantization=dequantization)
    torch.manual_seed(0)
    family = build_family(recipe, host.registry, data.info)
    losses = train(family, data.images, steps=60)
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10
    result = family.log_likelihood(data.images[:8], k=3)
    assert result.kind == "bound" and family.likelihood_kind == "bound"
    assert result.method == f"{dequantization} dequantization, importance-weighted, k=3"
    assert result.values.shape == (8,) and torch.isfinite(result.values).all()


def test_saved_weights_load_into_a_fresh_family(host, tmp_path):
    recipe, data = digits_flow(host)
    torch.manual_seed(0)
    family = build_family(recipe, host.registry, data.info)
    train(family, data.images, steps=5)
    save_model(family, str(tmp_path / "flow.safetensors"))
    torch.manual_seed(1)
    fresh = build_family(recipe, host.registry, data.info)
    load_model(fresh, str(tmp_path / "flow.safetensors"))
    x = data.images[500:516]
    torch.manual_seed(2)
    expected = family.log_likelihood(x, k=2).values
    torch.manual_seed(2)
    loaded = fresh.log_likelihood(x, k=2).values
    assert torch.allclose(loaded, expected, atol=1e-5)


def test_samples_are_on_the_grid_and_repeatable(host):
    recipe, data = digits_flow(host, temperature=0.8)
    torch.manual_seed(0)
    family = build_family(recipe, host.registry, data.info)
    train(family, data.images, steps=3)
    a = family.sample(6, generator=torch.Generator().manual_seed(4))
    b = family.sample(6, generator=torch.Generator().manual_seed(4))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b)
    assert torch.isin(a, torch.linspace(-1, 1, 17)).all()


def test_shapes_a_flow_cannot_squeeze_are_clear_errors(host):
    recipe, data = digits_flow(host, scales=4)
    with pytest.raises(RecipeError, match=r"\[family\].*divisible by 16.*8x8"):
        build_family(recipe, host.registry, data.info)
    with pytest.raises(ValueError, match="shaped \\(C, L\\) or \\(C, H, W\\)"):
        MultiScaleFlow((1, 4, 4, 4), conv_network(2), scales=1)
    with pytest.raises(RecipeError, match="dequantization"):
        build_family(digits_flow(host, dequantization="logit")[0], host.registry, data.info)
