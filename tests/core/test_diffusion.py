"""The diffusion family: the variational bound, diffusers samplers, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from dgm.assembly import build_data, build_family
from dgm.cli import main
from dgm.conditions import ConditionEncoder
from dgm.contract import Condition, DataInfo
from dgm.errors import RecipeError
from dgm.families.diffusion import SAMPLERS, Diffusion
from dgm.recipes import Recipe
from tests.conftest import REPO

INFO = DataInfo("image:image", (1, 2, 2), levels=17, condition=Condition.of_classes("ab"))
POINTS = torch.tensor([[-1.0, 0.5, 0.0, 1.0], [0.25, -0.5, 1.0, -1.0]]).reshape(2, 1, 2, 2)


class OracleDenoiser(nn.Module):
    """The exact minimiser of the training loss when class c's data is the single image
    POINTS[c]: eps (or v) computed from x_t and the known x_0."""

    def __init__(self, alphas_cumprod: Tensor, prediction: str, error: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.double())
        self.prediction = prediction
        self.error = error
        self.unused = nn.Linear(1, 1)  # so the family has a parameter and a device

    def forward(self, x_t: Tensor, t: Tensor, condition: Tensor | None) -> Tensor:
        a = self.alphas_cumprod[t.long()].reshape(-1, 1, 1, 1).to(x_t.dtype)
        labels = condition.argmax(1) if condition is not None else torch.zeros_like(t.long())
        x0 = POINTS[labels].to(x_t)
        x0 = x0 + self.error
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        if self.prediction == "epsilon":
            return eps
        return a.sqrt() * eps - (1 - a).sqrt() * x0


class OneHot(nn.Module):
    """A condition network that encodes class c as the one-hot vector e_c."""

    def forward(self, c: Tensor) -> Tensor:
        return nn.functional.one_hot(c.long(), 2).float()


def oracle_family(prediction: str = "epsilon", conditional: bool = False,
                  error: float = 0.0, snap_to_grid: bool = True) -> Diffusion:
    encoder = ConditionEncoder(OneHot(), INFO.condition, dim=2) if conditional else None
    family = Diffusion(nn.Identity(), INFO, timesteps=200, prediction=prediction,
                       snap_to_grid=snap_to_grid, condition_encoder=encoder)
    family.denoiser = OracleDenoiser(family.scheduler.alphas_cumprod, prediction, error)
    return family


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_small_noise_estimates_snap_onto_the_data_grid(prediction):
    x_t = POINTS[:1].expand(2, -1, -1, -1).double()
    t_small, t_large = torch.tensor([1, 1]), torch.tensor([150, 150])
    near = oracle_family(prediction, error=0.03)  # under half a bin (0.0625) off
    torch.testing.assert_close(near.estimate_x0(x_t, t_small), x_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(near.estimate_x0(x_t, t_large), x_t + 0.03)
    plain = oracle_family(prediction, error=0.03, snap_to_grid=False)
    torch.testing.assert_close(plain.estimate_x0(x_t, t_small), x_t + 0.03)
    # the bound pays for the error only where the estimate is not snapped
    snapped_nll = -near.log_likelihood(x_t).values
    assert torch.all(snapped_nll < -plain.log_likelihood(x_t).values - 1.0)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_a_perfect_denoiser_pays_only_the_prior_term_of_the_bound(prediction):
    family = oracle_family(prediction, snap_to_grid=False)
    x = POINTS[:1].expand(3, -1, -1, -1)
    result = family.log_likelihood(x)
    a_T = family.scheduler.alphas_cumprod[-1].double()
    mean_sq = (POINTS[0].double() ** 2).sum()
    prior_kl = 0.5 * (4 * ((1 - a_T) - 1 - torch.log(1 - a_T)) + a_T * mean_sq)
    # every KL term is zero and each pixel's bin holds ~all the decoder's mass
    assert result.kind == "bound" and "all 200 timesteps" in result.method
    torch.testing.assert_close(-result.values, prior_kl.expand(3), atol=1e-6, rtol=1e-6)
    # snapping a perfect estimate costs little: the grid prior pulls edge values inwards
    snapped = -oracle_family(prediction).log_likelihood(x).values
    assert torch.all((snapped >= -result.values) & (snapped < -result.values + 0.1))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_every_sampler_at_any_step_count_returns_the_data_of_a_perfect_denoiser(sampler,
                                                                                   steps):
    family = oracle_family(conditional=True)
    labels = torch.tensor([1, 0, 1])
    samples = family.sample(3, torch.Generator().manual_seed(0), condition=labels,
                            sampler=sampler, steps=steps)
    torch.testing.assert_close(samples, POINTS[labels])


def test_unknown_sampler_and_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*dpm-solver\\+\\+"):
        oracle_family().sample(2, sampler="euler")
    with pytest.raises(ValueError, match="prediction must be"):
        Diffusion(nn.Identity(), INFO, prediction="x0")
    with pytest.raises(ValueError, match="guidance must be 0 or more"):
        Diffusion(nn.Identity(), INFO, guidance=-1)


def small_diffusion(host, **family):
    recipe = Recipe({
        "data": {"name": "image:digits"},
        "family": {"name": "core:diffusion", "timesteps": 100, **family},
        "networks": {"denoiser": {"channels": [16, 32], "layers_per_block": 1,
                                  "norm_groups": 8}},
    }, "test")
    data = build_data(recipe, host.registry, "train")
    torch.manual_seed(0)
    return build_family(recipe, host.registry, data.info), data


@pytest.mark.slow
def test_the_bound_is_finite_and_falls_with_training(host):
    family, data = small_diffusion(host, prediction="v_prediction")
    x = data.images[:32]
    torch.manual_seed(1)
    before = -family.log_likelihood(x, timesteps=0).values.mean().item()
    opt = torch.optim.Adam(family.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss, _ = family.loss({"x": data.images[torch.randint(0, 1000, (32,), generator=g)]})
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(1)
    after = -family.log_likelihood(x, timesteps=0).values.mean().item()
    assert math.isfinite(before) and math.isfinite(after)
    assert after < 0.8 * before, (before, after)
    estimate = -family.log_likelihood(x, timesteps=10).values.mean().item()
    assert "estimated from 10 of 100" in family.log_likelihood(x[:2], timesteps=10).method
    assert abs(estimate - after) < 0.25 * after  # the stratified estimate is near the sum


def test_samples_are_on_the_data_grid_and_repeat_with_the_seed(host):
    family, _ = small_diffusion(host)
    a = family.sample(4, torch.Generator().manual_seed(3), steps=5)
    b = family.sample(4, torch.Generator().manual_seed(3), steps=5)
    assert a.shape == (4, 1, 8, 8) and torch.equal(a, b)
    assert torch.allclose(torch.round((a + 1) * 8) / 8 - 1, a)


def test_unet_padding_mode_reaches_every_convolution(host):
    entry = host.registry.get("networks", "core:unet2d")
    net = entry.obj((3, 8, 8), channels=[8, 16], norm_groups=4, layers_per_block=1,
                    padding_mode="circular")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.padding_mode == "circular" for m in convs)
    with pytest.raises(ValueError, match="divisible by 4"):
        entry.obj((1, 6, 6), channels=[8, 8, 8], norm_groups=4)


def test_dgm_sample_options_reach_the_sampler(host, in_tmp):
    assert main(["run", str(REPO / "recipes/image/digits-diffusion.toml"), "run.dir=run",
                 "train.steps=2", "train.progress=false", "sample.n=2",
                 "evaluate.max_examples=4", "evaluate.likelihood.timesteps=2",
                 "evaluate.metrics=[]", "family.timesteps=20",
                 "networks.denoiser.channels=[16, 32]", "networks.denoiser.norm_groups=8"],
                ) == 0
    assert main(["sample", "run", "--n", "3", "-o", "sampler=ddim", "-o", "steps=4",
                 "--out", "ddim"]) == 0
    assert len(list((in_tmp / "ddim").glob("sample-*.png"))) == 3
    with pytest.raises(RecipeError, match="unknown key 'stepz'. Did you mean 'steps'"):
        main(["--traceback", "sample", "run", "-o", "stepz=4"])
