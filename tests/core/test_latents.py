"""Composition: a diffusion prior over a trained VAE's latents, from recipes alone."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dgm.cli import main
from dgm.errors import DataError
from dgm.latents import latents
from dgm.loaded_run import LoadedRun
from dgm.runs import RunDir
from tests.conftest import REPO

QUICK = ["train.steps=3", "train.progress=false", "sample.n=3", "evaluate.max_examples=4",
         "evaluate.metric_samples=4"]


@pytest.fixture
def vae_run(in_tmp):
    assert main(["run", str(REPO / "recipes/image/digits-vae.toml"), "run.dir=vae",
                 "evaluate.likelihood.k=2", "family.latent_dim=5", *QUICK]) == 0
    return in_tmp / "vae"


def test_latents_are_the_vae_posterior_means_of_its_data(vae_run):
    data = latents("val", str(vae_run))
    family = LoadedRun.open(RunDir(vae_run)).family
    from dgm_image.datasets import digits

    images = digits("val")
    expected = family.encode(images.images)[0]
    assert data.info.shape == (5,) and len(data) == len(images) == 350
    torch.testing.assert_close(data.latents, expected)
    assert torch.equal(data[3]["c"], images[3]["c"])


def test_latent_diffusion_samples_decode_to_images_through_the_vae(vae_run, in_tmp):
    recipe = str(REPO / "recipes/image/digits-latent-diffusion.toml")
    assert main(["run", recipe, "run.dir=prior", "data.run=vae", "family.timesteps=50",
                 "evaluate.likelihood.timesteps=4", *QUICK]) == 0
    files = sorted((in_tmp / "prior" / "samples").glob("sample-*.png"))
    assert len(files) == 3 and Image.open(files[0]).size == (8, 8)
    assert Image.open(in_tmp / "prior" / "samples" / "grid.png").size[0] >= 8


def test_latents_of_a_missing_run_or_a_family_without_an_encoder_are_clear_errors(in_tmp):
    with pytest.raises(DataError, match="data.run = 'nowhere': no trained autoencoder"):
        latents("train", "nowhere")
    assert main(["run", str(REPO / "recipes/image/digits-diffusion.toml"), "run.dir=diff",
                 "family.timesteps=10", "networks.denoiser.channels=[8, 16]",
                 "networks.denoiser.norm_groups=4", "evaluate.likelihood.timesteps=2",
                 *QUICK]) == 0
    with pytest.raises(DataError, match="Diffusion has no amortised posterior \\(capability "
                       "'encodes'\\)"):
        latents("train", "diff")
