"""An image folder read file by file as batches are drawn (data.stream): the same
examples as one held in memory, with only the file list kept, so a folder larger than
the machine's memory trains."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dgm.cli import main
from dgm.errors import DataError
from dgm_image import datasets
from tests.conftest import REPO
from tests.image.test_image_plugin import make_folder


def test_a_streamed_folder_yields_the_examples_a_held_one_does(tmp_path):
    make_folder(tmp_path, size=(6, 5))
    for split in ("train", "test"):
        held = datasets.folder(split, str(tmp_path), mode="L", stream=False)
        streamed = datasets.folder(split, str(tmp_path), mode="L", stream=True)
        assert isinstance(streamed, datasets.ImageFiles)
        assert not any(isinstance(v, torch.Tensor) for v in vars(streamed).values())
        assert streamed.info == held.info and len(streamed) == len(held)
        for i in range(len(held)):
            assert torch.equal(streamed[i]["x"], held[i]["x"])
            assert streamed[i]["c"] == held[i]["c"]
    resized = datasets.folder("train", str(tmp_path), mode="RGB", size=[4, 8], stream=True)
    assert resized.info.shape == (3, 4, 8) and resized[0]["x"].shape == (3, 4, 8)


def test_a_file_damaged_after_the_start_is_named_when_it_is_read(tmp_path):
    make_folder(tmp_path, classes=("a",), per_class=4)
    data = datasets.folder("train", str(tmp_path), mode="L", stream=True, val_fraction=0,
                           test_fraction=0)
    damaged = data.files[2]
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(DataError, match=f"{damaged.name}.*changed or damaged since"):
        data[2]


def write_large_folder(root, n: int, side: int) -> None:
    """``n`` smooth RGB PNGs (small files that decode to ``side`` x ``side`` x 3)."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    for i in range(n):
        r, g = np.meshgrid(ramp, ramp[::-1])
        image = np.stack([r, g, np.full_like(r, i % 256)], axis=-1).astype(np.uint8)
        Image.fromarray(image).save(root / f"{i:05d}.png", compress_level=1)


def folder_recipe(root, n: int, side: int):
    """The digits-VAE recipe on a folder of ``n`` generated images under ``root``."""
    images = root / "images"
    images.mkdir()
    write_large_folder(images, n, side)
    recipe = root / "folder-vae.toml"
    recipe.write_text((REPO / "recipes/image/digits-vae.toml").read_text()
                      .replace('name = "image:digits"',
                               f'name = "image:folder"\npath = {json.dumps(str(images))}'))
    return recipe


def peak_rss_mb(args: list[str], cwd) -> float:
    """Peak resident memory of ``dgm`` run with ``args`` in a child process, in MB."""
    probe = ("import resource, subprocess, sys\n"
             "code = subprocess.run(sys.argv[1:]).returncode\n"
             "assert code == 0, code\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "dgm", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_folder_larger_than_the_memory_it_may_use_trains_streamed(tmp_path):
    """4000 images, of which the training split's 3200 decode to 338 MB of float32:
    held in memory, the run's peak RSS carries them; streamed, only their names."""
    recipe = folder_recipe(tmp_path, 4000, 96)
    common = [str(recipe), "train.steps=4", "train.progress=false", "data.batch_size=8",
              "networks.encoder.hidden=[32]", "networks.decoder.hidden=[32]",
              "family.latent_dim=4", "sample.n=2", "evaluate.max_examples=8",
              "evaluate.likelihood.k=2", "evaluate.metrics=[]"]
    held = peak_rss_mb(["run", *common, "run.dir=held", "data.stream=false"], tmp_path)
    streamed = peak_rss_mb(["run", *common, "run.dir=streamed", "data.stream=true"],
                           tmp_path)
    train_decoded_mb = 3200 * 3 * 96 * 96 * 4 / 2**20
    assert held - streamed > 0.7 * train_decoded_mb, (held, streamed)
    assert (tmp_path / "streamed/model/model.safetensors").is_file()


def test_a_streamed_folder_trains_with_worker_processes_and_resumes_bit_identical(in_tmp):
    recipe = folder_recipe(in_tmp, 60, 8)
    args = ["run", str(recipe), "train.progress=false", "data.batch_size=8",
            "data.stream=true", "data.num_workers=2", "train.checkpoint_every=4",
            "sample.n=2", "evaluate.max_examples=4", "evaluate.likelihood.k=2",
            "evaluate.metrics=[]"]
    assert main([*args, "run.dir=whole", "train.steps=8"]) == 0
    assert main([*args, "run.dir=cut", "train.steps=4"]) == 0
    assert main([*args, "run.dir=cut", "train.steps=8"]) == 0  # mid-epoch: 6 batches each
    whole = load_file(in_tmp / "whole/model/model.safetensors")
    cut = load_file(in_tmp / "cut/model/model.safetensors")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
