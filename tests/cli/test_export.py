"""`dgm export`: a diffusion run becomes a folder diffusers' DDPMPipeline loads offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dgm.cli import main
from dgm.errors import ExportError
from dgm.loaded_run import LoadedRun
from dgm.runs import RunDir
from tests.conftest import REPO

QUICK = ["train.steps=2", "train.progress=false", "sample.n=2", "evaluate.max_examples=4",
         "evaluate.metrics=[]"]
TINY_DIFFUSION = ["family.timesteps=20", "networks.denoiser.channels=[8, 16]",
                  "networks.denoiser.norm_groups=4", "evaluate.likelihood.timesteps=2"]


@pytest.mark.slow
def test_an_exported_run_loads_and_samples_in_ddpm_pipeline(in_tmp, monkeypatch):
    from diffusers import DDPMPipeline

    assert main(["run", str(REPO / "recipes/image/digits-diffusion.toml"), "run.dir=diff",
                 *QUICK, *TINY_DIFFUSION]) == 0
    assert main(["export", "diff", "exported"]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipeline = DDPMPipeline.from_pretrained(in_tmp / "exported")
    images = pipeline(batch_size=2, num_inference_steps=3, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 8, 8, 1) and np.all((images >= 0) & (images <= 1))
    assert (in_tmp / "exported" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((in_tmp / "exported" / "dgm_export.json").read_text())["data"][
        "levels"] == 17

    family = LoadedRun.open(RunDir(in_tmp / "diff")).family
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 19])
    with torch.no_grad():
        torch.testing.assert_close(pipeline.unet(x, t).sample, family.denoiser(x, t))
    assert pipeline.scheduler.config.num_train_timesteps == 20


def test_runs_that_a_pipeline_cannot_express_are_refused(in_tmp):
    assert main(["run", str(REPO / "recipes/image/digits-vae.toml"), "run.dir=vae",
                 "evaluate.likelihood.k=2", *QUICK]) == 0
    with pytest.raises(ExportError, match="trained a VAE; only diffusion runs"):
        main(["--traceback", "export", "vae", "out"])
    assert main(["run", str(REPO / "recipes/image/digits-diffusion.toml"), "run.dir=circ",
                 "networks.denoiser.padding_mode=circular", *QUICK, *TINY_DIFFUSION]) == 0
    with pytest.raises(ExportError, match="circular padding"):
        main(["--traceback", "export", "circ", "out"])
    (in_tmp / "full").mkdir()
    (in_tmp / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty; nothing was written"):
        main(["--traceback", "export", "circ", "full"])
    assert (in_tmp / "full" / "keep.txt").read_text() == "mine"
    assert not (in_tmp / "out").exists()
