"""The GAN family: each loss term moves its own network the right way and no other, the
R1 penalty and spectral normalisation do what they claim, training moves samples toward
the data, and `dgm run` reports sample metrics for this implicit model."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from dgm.assembly import build_data, build_family
from dgm.cli import main
from dgm.errors import RecipeError
from dgm.families.gan import r1_penalty
from dgm.metrics import mmd_squared
from dgm.recipes import Recipe
from tests.conftest import REPO

LOSSES = ["non-saturating", "hinge"]


def small_gan(host, **family):
    recipe = Recipe({
        "data": {"name": "image:digits"},
        "family": {"name": "core:gan", "latent_dim": 8, **family},
        "networks": {"generator": {"name": "image:dcgan-generator", "channels": [16, 8]},
                     "critic": {"name": "image:dcgan-critic", "channels": [8, 16]}},
    }, "test")
    data = build_data(recipe, host.registry, "train")
    torch.manual_seed(0)
    return build_family(recipe, host.registry, data.info), data


def step_on(params, loss, lr=1e-2):
    """One plain gradient step on ``params`` only."""
    opt = torch.optim.SGD(params, lr=lr)
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("loss", LOSSES)
def test_a_generator_step_raises_the_critic_score_of_its_samples(host, loss):
    gan, _ = small_gan(host, loss=loss)
    gan.generator.eval()  # fixed batch-norm statistics: only the weights change
    z = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    before = gan.score(gan.generator(z)).mean().item()
    step_on(gan.generator.parameters(), gan.generator_term(gan.generator(z)))
    assert gan.score(gan.generator(z)).mean().item() > before


@pytest.mark.parametrize("loss", LOSSES)
def test_a_critic_step_widens_the_gap_between_real_and_fake_scores(host, loss):
    gan, data = small_gan(host, loss=loss)
    real = data.images[:32]
    with torch.no_grad():
        fake = gan.generator(torch.randn(32, 8, generator=torch.Generator().manual_seed(1)))

    def gap():
        return (gan.score(real).mean() - gan.score(fake).mean()).item()

    before = gap()
    step_on(gan.critic.parameters(), gan.critic_term(real, fake)[0])
    assert gap() > before


@pytest.mark.parametrize("loss", LOSSES)
def test_each_term_sends_gradient_only_into_its_own_network(host, loss):
    gan, data = small_gan(host, loss=loss, r1_gamma=1.0)
    real = data.images[:16]
    fake = gan.generator(gan.prior.sample(16))
    gan.generator_term(fake).backward(retain_graph=True)
    assert all(p.grad is None for p in gan.critic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in gan.generator.parameters())
    gan.zero_grad(set_to_none=True)
    gan.critic_term(real, fake)[0].backward()
    assert all(p.grad is None for p in gan.generator.parameters())
    assert all(p.grad is not None for p in gan.critic.parameters())


def test_the_family_loss_is_the_sum_of_both_terms_and_logs_the_players(host):
    gan, data = small_gan(host, r1_gamma=2.0)
    torch.manual_seed(3)
    loss, logs = gan.loss({"x": data.images[:16]})
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake", "r1"}
    expected = logs["d_loss"] + 0.5 * 2.0 * logs["r1"] + logs["g_loss"]
    assert torch.allclose(loss.detach(), expected, atol=1e-5)


def test_r1_matches_a_direct_squared_gradient_norm():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    real = torch.randn(5, 1, 2, 2)
    scores, penalty = r1_penalty(lambda x: critic(x).squeeze(1), real)
    for i in range(5):
        x = real[i:i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x)
        assert torch.allclose(penalty[i], grad.square().sum(), atol=1e-6)
    assert torch.allclose(scores, critic(real).squeeze(1))
    assert penalty.requires_grad  # it trains the critic


def test_spectral_norm_parametrises_every_critic_layer_to_unit_norm(host):
    gan, data = small_gan(host, spectral_norm=True)
    layers = [m for m in gan.critic.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 3
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    with torch.no_grad():
        for _ in range(50):  # each training-mode forward runs a power iteration
            gan.score(data.images[:4])
    gan.critic.eval()
    for layer in layers:
        matrix = layer.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(matrix, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_spectral_norm_is_off_by_default(host):
    gan, _ = small_gan(host)
    assert not any(parametrize.is_parametrized(m) for m in gan.critic.modules())


def test_separate_learning_rates_and_betas_reach_the_optimizer(host):
    gan, _ = small_gan(host, critic_lr_ratio=4.0, betas=[0.0, 0.99])
    groups = gan.optimizer_groups(1e-3)
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    by_network = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert all(by_network[id(p)]["lr"] == pytest.approx(4e-3) for p in gan.critic.parameters())
    assert all(by_network[id(p)]["lr"] == pytest.approx(1e-3)
               for p in gan.generator.parameters())
    assert all(g["betas"] == (0.0, 0.99) for g in optimizer.param_groups)
    assert len(by_network) == len(list(gan.parameters()))


def test_samples_are_images_on_the_data_grid_and_repeatable_under_a_seed(host):
    gan, _ = small_gan(host)
    gan.eval()
    a = gan.sample(6, generator=torch.Generator().manual_seed(2))
    b = gan.sample(6, generator=torch.Generator().manual_seed(2))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b)
    assert torch.isin(a, torch.linspace(-1, 1, 17)).all()
    with pytest.raises(NotImplementedError, match="no likelihood"):
        gan.log_likelihood(a)


def test_samples_stay_continuous_without_snapping(host):
    gan, _ = small_gan(host, snap_to_levels=False)
    gan.eval()
    samples = gan.sample(6, generator=torch.Generator().manual_seed(2))
    assert samples.min() >= -1 and samples.max() <= 1
    assert not torch.isin(samples, torch.linspace(-1, 1, 17)).all()


def test_training_moves_samples_toward_the_data(host):
    gan, data = small_gan(host, loss="non-saturating", r1_gamma=1.0)
    optimizer = torch.optim.AdamW(gan.optimizer_groups(2e-3), lr=2e-3)
    real = data.images[:256]

    def distance():
        gan.eval()
        samples = gan.sample(256, generator=torch.Generator().manual_seed(0))
        gan.train()
        return mmd_squared(samples, real)

    before = distance()
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss, _ = gan.loss({"x": data.images[torch.randint(0, 1000, (64,), generator=g)]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = distance()
    assert after < 0.5 * before


@pytest.mark.parametrize(("setting", "message"), [
    ({"loss": "wasserstein"}, "loss.*one of .non-saturating., .hinge."),
    ({"r1_gamma": -1.0}, "r1_gamma"),
    ({"critic_lr_ratio": 0.0}, "critic_lr_ratio"),
    ({"betas": [0.5]}, "betas"),
    ({"latent_dim": 0}, "latent_dim"),
])
def test_bad_settings_name_the_family_table(host, setting, message):
    with pytest.raises(RecipeError, match=rf"\[family\].*{message}"):
        small_gan(host, **setting)


@pytest.mark.parametrize("size", [8, 32])
def test_dcgan_networks_fit_any_size_divisible_by_their_stages(host, size):
    from dgm_image.gan_networks import DCGANCritic, DCGANGenerator

    generator = DCGANGenerator((3, size, size), latent_dim=5, channels=[16, 8, 4])
    critic = DCGANCritic((3, size, size), channels=[4, 8, 16])
    images = generator(torch.randn(2, 5))
    assert images.shape == (2, 3, size, size) and images.abs().max() <= 1
    assert critic(images).shape == (2,)


def test_dcgan_networks_reject_sizes_their_stages_cannot_halve():
    from dgm_image.gan_networks import DCGANCritic, DCGANGenerator

    with pytest.raises(ValueError, match="divisible by 8"):
        DCGANGenerator((1, 12, 12), latent_dim=4, channels=[8, 8, 8])
    with pytest.raises(ValueError, match="divisible by 16"):
        DCGANCritic((1, 8, 8), channels=[4, 4, 4, 4])


def test_dgm_run_reports_sample_metrics_and_no_likelihood(in_tmp):
    recipe = str(REPO / "recipes" / "image" / "digits-gan.toml")
    assert main(["run", recipe, "run.dir=out", "train.steps=3", "train.progress=false",
                 "sample.n=4", "evaluate.metric_samples=8"]) == 0
    report = json.loads((in_tmp / "out" / "evaluation.json").read_text())
    assert report["kind"] == "none" and "no likelihood" in report["note"]
    assert "nll_nats" not in report
    assert set(report["metrics"]) == {"core:mmd", "core:patch-swd", "core:copy-rate"}
    for values in report["metrics"].values():
        assert {"model", "real_vs_real"} <= set(values)
    assert (in_tmp / "out" / "samples" / "grid.png").is_file()
    logged = [json.loads(line) for line in (in_tmp / "out" / "metrics.jsonl").open()]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "r1"} <= set(logged[-1])
