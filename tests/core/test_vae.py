"""The VAE family: IWAE bounds, training progress, sampling and reconstruction."""

from __future__ import annotations

import torch

from dgm.assembly import build_data, build_family
from dgm.recipes import Recipe


def small_vae(host, **family):
    recipe = Recipe({
        "data": {"name": "image:digits"},
        "family": {"name": "core:vae", "latent_dim": 4, **family},
        "networks": {"encoder": {"name": "image:mlp-encoder", "hidden": [64]},
                     "decoder": {"name": "image:mlp-decoder", "hidden": [64]}},
    }, "test")
    data = build_data(recipe, host.registry, "train")
    torch.manual_seed(0)
    return build_family(recipe, host.registry, data.info), data


def train(vae, data, steps=150):
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    x = data.images
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (64,), generator=g)]
        loss, _ = vae.loss({"x": batch})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_elbo_training_lowers_the_loss(host):
    vae, data = small_vae(host)
    losses = train(vae, data)
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20


def test_iwae_is_at_least_the_elbo_and_tightens_with_k(host):
    vae, data = small_vae(host)
    train(vae, data, steps=100)
    x = data.images[:32]
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([vae.elbo(x) for _ in range(200)]).mean(0)
    torch.manual_seed(1)
    iwae = {k: vae.log_likelihood(x, k=k, chunk=50).values for k in (1, 10, 100, 1000)}
    assert abs(iwae[1].mean() - elbo.mean()) < 1.0  # k=1 is a one-sample ELBO
    assert iwae[1000].mean() >= elbo.mean()
    assert iwae[1].mean() < iwae[10].mean() < iwae[100].mean() < iwae[1000].mean()
    assert (iwae[1000] >= elbo - 0.5).float().mean() > 0.95


def test_iwae_reports_a_bound_and_its_method(host):
    vae, data = small_vae(host)
    result = vae.log_likelihood(data.images[:4], k=20)
    assert result.kind == "bound" and result.method == "IWAE, k=20"
    assert result.values.shape == (4,)


def test_samples_and_reconstructions_are_on_the_data_grid(host):
    vae, data = small_vae(host)
    samples = vae.sample(9, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (9, 1, 8, 8)
    assert torch.isin(samples, torch.linspace(-1, 1, 17)).all()
    recon = vae.reconstruct(data.images[:3])
    assert recon.shape == (3, 1, 8, 8) and recon.min() >= -1 and recon.max() <= 1


def test_sampling_is_deterministic_under_a_seed(host):
    vae, _ = small_vae(host)
    a = vae.sample(5, generator=torch.Generator().manual_seed(3))
    b = vae.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
