"""Conditioning reaches the denoiser, and `dgm sample --condition seven` writes WAVs."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import soundfile as sf
import torch

from dgm.assembly import build_family
from dgm.cli import main
from dgm.plugins import get_registry
from dgm.recipes import read_recipe
from dgm_audio.datasets import spoken_digits
from dgm_audio.intelligibility import score_run
from tests.conftest import REPO

RECIPE = REPO / "recipes" / "speech" / "digits-mel-diffusion.toml"
SMALL = ["networks.denoiser.channels=[8, 16, 16]", "train.steps=2", "train.progress=false",
         "sample.n=2", "evaluate.max_examples=4", "evaluate.metric_samples=4",
         "evaluate.likelihood.timesteps=2", "family.sampling_steps=2"]


def test_changing_the_condition_changes_the_sample():
    recipe = read_recipe(RECIPE, ["networks.denoiser.channels=[8, 16, 16]"])
    torch.manual_seed(0)
    family = build_family(recipe, get_registry(), spoken_digits("val").info).eval()
    for p in family.parameters():  # a trained-looking net: no zero-initialised layers
        p.data.normal_(0, 0.05)

    def draw(digit: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return family.sample(2, generator, condition=torch.full((2,), digit), steps=2)

    assert torch.equal(draw(3), draw(3))
    assert not torch.allclose(draw(3), draw(7))


@pytest.mark.slow
def test_sample_with_a_condition_writes_wavs_and_a_page(in_tmp, capsys):
    assert main(["run", str(RECIPE), "run.dir=out", *SMALL]) == 0
    assert main(["sample", "out", "--n", "3", "--condition", "seven", "-o", "steps=2",
                 "--out", "sevens"]) == 0
    wavs = sorted((in_tmp / "sevens").glob("sample-*.wav"))
    assert len(wavs) == 3
    info = sf.info(wavs[0])
    assert (info.samplerate, info.frames, info.subtype) == (8000, 8192, "PCM_16")
    if shutil.which("soxi"):
        out = subprocess.run(["soxi", "-r", str(wavs[0])], capture_output=True, text=True)
        assert out.stdout.strip() == "8000"
    page = (in_tmp / "sevens" / "index.html").read_text()
    assert "sample-0002.wav" in page and (in_tmp / "sevens" / "grid.png").is_file()
    capsys.readouterr()
    assert main(["sample", "out", "--n", "1", "--condition", "eleven"]) == 2
    err = capsys.readouterr().err
    assert "eleven" in err and "zero, one, two" in err

    report = score_run(in_tmp / "out", n_per_class=1, cache_dir=in_tmp / "cache",
                       options={"steps": 2}, out=in_tmp / "per-digit", classifier_epochs=1,
                       echo=lambda _: None)
    assert set(report["per_class"]) == set(spoken_digits("val").info.classes)
    assert 0 <= report["accuracy_on_generated"] <= 1 and report["real_time_factor"] > 0
    assert (in_tmp / "out" / "intelligibility.json").is_file()
    assert sf.info(in_tmp / "per-digit" / "seven" / "sample-0000.wav").frames == 8192
    assert "seven/index.html" in (in_tmp / "per-digit" / "index.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["digits-mel-vae.toml", "digits-mulaw-wavenet.toml"])
def test_runs_trained_without_a_condition_refuse_one(in_tmp, capsys, recipe):
    path = REPO / "recipes" / "speech" / recipe
    tiny = ["train.steps=1", "train.progress=false", "sample.n=1", "evaluate.max_examples=2",
            "evaluate.metrics=[]", "data.duration=0.128"]
    if "vae" in recipe:
        tiny += ["evaluate.likelihood.k=2", "data.duration=1.024"]
    assert main(["run", str(path), "run.dir=out", *tiny]) == 0
    wav = sf.info(in_tmp / "out" / "samples" / "sample-0000.wav")
    rate, frames = (8000, 8192) if "vae" in recipe else (4000, 512)
    assert (wav.samplerate, wav.frames, wav.subtype) == (rate, frames, "PCM_16")
    capsys.readouterr()
    assert main(["sample", "out", "--n", "1", "--condition", "seven"]) == 2
    assert "takes no condition" in capsys.readouterr().err
