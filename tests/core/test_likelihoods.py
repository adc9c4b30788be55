"""Likelihoods against exact computation."""

from __future__ import annotations

import math

import pytest
import torch

from dgm.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian
from dgm.priors import StandardNormal


def test_gaussian_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_scale = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5) * 0.5
    params = torch.cat([mean, log_scale], 1)
    x = torch.randn(4, 3, 5, 5)
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(Gaussian().log_prob(params, x), expected)
    torch.testing.assert_close(Gaussian().mean(params), mean)


def test_gaussian_samples_have_the_stated_moments():
    params = torch.cat([torch.full((1, 1, 200, 200), 0.3), torch.full((1, 1, 200, 200),
                                                                       math.log(0.5))], 1)
    s = Gaussian().sample(params, torch.Generator().manual_seed(0))
    assert abs(s.mean().item() - 0.3) < 0.01 and abs(s.std().item() - 0.5) < 0.01


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_logistic_sums_to_one_over_the_grid(levels):
    torch.manual_seed(levels)
    lik = DiscretizedLogistic(levels)
    mean = torch.randn(6, 1, 1, 1) * 0.8
    log_scale = torch.randn(6, 1, 1, 1) - 2  # includes narrow scales
    params = torch.cat([mean, log_scale], 1)
    grid = torch.linspace(-1, 1, levels)
    masses = torch.stack([lik.log_prob(params, g.expand(6, 1, 1, 1)) for g in grid]).exp()
    torch.testing.assert_close(masses.sum(0), torch.ones(6), atol=1e-5, rtol=0)


def test_discretized_logistic_mean_is_the_expectation_over_the_grid():
    lik = DiscretizedLogistic(17)
    params = torch.tensor([[[[0.4]], [[-1.5]]]])
    grid = torch.linspace(-1, 1, 17)
    masses = torch.stack([lik.log_prob(params, g.view(1, 1, 1, 1)) for g in grid]).exp()
    torch.testing.assert_close(lik.mean(params).flatten(), (masses.flatten() * grid).sum(
        ).reshape(1), atol=1e-5, rtol=0)


def test_discretized_logistic_samples_lie_on_the_grid_with_the_right_frequencies():
    lik = DiscretizedLogistic(5)
    params = torch.cat([torch.full((1, 1, 300, 300), 0.1), torch.full((1, 1, 300, 300),
                                                                       -1.0)], 1)
    s = lik.sample(params, torch.Generator().manual_seed(0))
    grid = torch.linspace(-1, 1, 5)
    assert torch.isin(s, grid).all()
    for g in grid:
        p = lik.log_prob(params[:, :, :1, :1], g.view(1, 1, 1, 1)).exp().item()
        assert abs((s == g).float().mean().item() - p) < 0.01


def test_discretized_logistic_rejects_off_grid_data():
    with pytest.raises(ValueError, match="17-level grid"):
        DiscretizedLogistic(17).check_data(torch.tensor([0.01, 0.5]))


def test_bernoulli_sums_to_one_and_matches_torch():
    logits = torch.randn(5, 1, 2, 2)
    lik = Bernoulli()
    total = torch.zeros(5)
    for bits in range(16):
        x = torch.tensor([(bits >> i) & 1 for i in range(4)], dtype=torch.float32)
        x = x.view(1, 1, 2, 2).expand(5, 1, 2, 2)
        lp = lik.log_prob(logits, x)
        expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
        torch.testing.assert_close(lp, expected)
        total += lp.exp()
    torch.testing.assert_close(total, torch.ones(5))
    with pytest.raises(ValueError, match="binary"):
        lik.check_data(torch.tensor([0.5]))


def test_standard_normal_prior_matches_torch():
    prior = StandardNormal((3,))
    z = prior.sample(7, torch.Generator().manual_seed(0))
    assert z.shape == (7, 3)
    expected = torch.distributions.Normal(0, 1).log_prob(z).sum(1)
    torch.testing.assert_close(prior.log_prob(z), expected)
