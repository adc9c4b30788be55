"""Texture runs end to end: a few training steps, then `dgm sample --size` writes PNGs at
that size, a 2x2-tiled preview, and samples with no seam."""

from __future__ import annotations

import pytest
from PIL import Image

from dgm.cli import main
from dgm.errors import RecipeError
from dgm_image.codec import read_image
from dgm_texture.metrics import seam_energies
from tests.conftest import REPO

GAN = str(REPO / "recipes" / "texture" / "brick-gan.toml")
DIFFUSION = str(REPO / "recipes" / "texture" / "brick-diffusion.toml")
QUICK = ["train.progress=false", "evaluate.metrics=[]", "sample.n=2", "sample.size=64x64"]


def assert_no_seam(paths: list, period: int) -> None:
    """Across the tile borders the gradient energy is within noise of the interior's
    (borders of the same phase: see seam_energies)."""
    import torch

    x = torch.stack([read_image(p, mode="L") for p in paths])
    interior, seam = seam_energies(x, period)
    columns = (x.shape[-1] - 1) // period if period > 1 else x.shape[-1] - 1
    for part, value in ((interior[:columns], seam[0]), (interior[columns:], seam[1])):
        assert value <= part.mean() + 4 * part.std(), (float(value), float(part.std()))


@pytest.mark.slow
def test_gan_texture_samples_any_size_and_tiles(host, in_tmp):
    assert main(["run", GAN, "run.dir=gan", "train.steps=20", *QUICK]) == 0
    assert main(["sample", "gan", "--size", "320x160", "--n", "3", "--out", "big"]) == 0
    pngs = sorted((in_tmp / "big").glob("sample-*.png"))
    assert len(pngs) == 3
    with Image.open(pngs[0]) as im:
        assert im.size == (320, 160) and im.mode == "L"
    with Image.open(in_tmp / "big" / "grid.png") as grid:  # each sample tiled 2x2
        assert grid.width >= 2 * 320 and grid.height >= 2 * 160
    assert_no_seam(pngs, period=16)
    with pytest.raises(RecipeError, match=r"multiples of 16; 50x50 is not \(nearest: 48x48\)"):
        main(["--traceback", "sample", "gan", "--size", "50x50", "--n", "1"])


@pytest.mark.slow
def test_diffusion_texture_trained_a_few_steps_tiles_without_seam(host, in_tmp):
    assert main(["run", DIFFUSION, "run.dir=diff", "train.steps=5", *QUICK,
                 "networks.denoiser.channels=[16, 16]", "networks.denoiser.norm_groups=8",
                 "family.timesteps=50", "evaluate.max_examples=2",
                 "evaluate.likelihood.timesteps=2"]) == 0
    assert main(["sample", "diff", "--size", "80x48", "--n", "4", "-o", "steps=4",
                 "--out", "wide"]) == 0
    pngs = sorted((in_tmp / "wide").glob("sample-*.png"))
    with Image.open(pngs[0]) as im:
        assert im.size == (80, 48)
    assert_no_seam(pngs, period=2)


def test_size_on_a_fixed_size_family_is_a_clear_error(host, in_tmp):
    vae = str(REPO / "recipes" / "image" / "digits-vae.toml")
    assert main(["run", vae, "run.dir=vae", "train.steps=2", "train.progress=false",
                 "evaluate.metrics=[]", "sample.n=2", "evaluate.max_examples=2",
                 "evaluate.likelihood.k=2"]) == 0
    with pytest.raises(RecipeError, match="samples only at its training size"):
        main(["--traceback", "sample", "vae", "--size", "16x16"])
    with pytest.raises(RecipeError, match="WIDTHxHEIGHT"):
        main(["--traceback", "sample", "vae", "--size", "16by16"])
