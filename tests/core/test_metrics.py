"""The core's weight-free sample metrics, and `dgm run` reporting them."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dgm.cli import main
from dgm.metrics import copy_rate, kernel_mmd, laplacian_pyramid, patch_swd
from tests.conftest import REPO

RECIPE = str(REPO / "recipes" / "image" / "digits-vae.toml")


def images(n: int, seed: int, size: int = 8) -> torch.Tensor:
    """Smooth random images in [-1, 1]: 4x4 noise upsampled, a stand-in for digits."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def noise_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    mmd = kernel_mmd()
    a, b = noise_like(torch.empty(300, 16), 1), noise_like(torch.empty(300, 16), 2)
    same = mmd(a, b)
    shifted = mmd(a, b + 0.5)
    far = mmd(a, b + 2.0)
    assert abs(same) < 0.01
    assert shifted > 0.05 and shifted > 10 * abs(same)
    assert far > shifted
    assert kernel_mmd(scales=[1.0])(a, b + 0.5) > 0.01  # one bandwidth works too


def test_mmd_works_on_any_shape_and_rejects_mismatches():
    x = images(50, 0)
    assert isinstance(kernel_mmd()(x, images(50, 1)), float)
    with pytest.raises(ValueError, match="differ in shape"):
        kernel_mmd()(x, torch.zeros(50, 1, 4, 4))
    with pytest.raises(ValueError, match="at least 2"):
        kernel_mmd()(x[:1], x)


def test_patch_swd_is_zero_for_identical_sets_and_grows_with_noise_and_blur():
    swd = patch_swd()
    x, y = images(200, 0), images(200, 1)
    assert swd(x, x) == 0.0
    real = swd(y, x)
    noisy = [swd(y + s * noise_like(y, 3), x) for s in (0.1, 0.3, 0.6)]
    assert real < noisy[0] < noisy[1] < noisy[2]
    sharp = x + 0.3 * noise_like(x, 4)  # detail at the finest level
    blurred = F.interpolate(F.avg_pool2d(sharp, 2), size=(8, 8), mode="bilinear")
    assert swd(blurred, sharp) > 3 * swd(x + 0.3 * noise_like(x, 5), sharp)


def test_patch_swd_is_deterministic_under_its_seed():
    x, y = images(100, 0, size=16), images(100, 1, size=16) + 0.1
    assert patch_swd(seed=3)(x, y) == patch_swd(seed=3)(x, y)
    assert patch_swd(seed=3)(x, y) != patch_swd(seed=4)(x, y)
    # large sets: fewer patches than exist are drawn, still repeatably
    assert patch_swd(max_patches=500)(x, y) == patch_swd(max_patches=500)(x, y)


def test_patch_swd_needs_images():
    with pytest.raises(ValueError, match=r"images shaped \(N, C, H, W\)"):
        patch_swd()(torch.zeros(10, 64), torch.zeros(10, 64))


def test_the_pyramid_has_band_passes_then_the_low_pass():
    x = images(2, 0, size=16)
    bands = laplacian_pyramid(x, 3)
    assert [tuple(b.shape[-2:]) for b in bands] == [(16, 16), (8, 8), (4, 4)]
    assert len(laplacian_pyramid(images(2, 0, size=4), 5)) == 2  # stops at 2x2


def test_copy_rate_counts_near_duplicates_of_training_examples():
    rate = copy_rate()
    train = images(300, 0)
    assert rate.against == "train"
    assert rate(train, train) == 1.0
    assert rate(noise_like(train, 1), train) == 0.0
    assert rate(images(300, 2), train) < 0.05  # fresh draws are not copies
    half = torch.cat([train[:50] + 0.001 * noise_like(train[:50], 3), images(50, 4)])
    assert 0.5 <= rate(half, train) <= 0.55


def test_the_core_registers_its_metrics(host):
    registry = host.registry
    for name in ("core:mmd", "core:patch-swd", "core:copy-rate"):
        assert registry.get("metrics", name).plugin == "core"


def test_dgm_run_reports_metrics_next_to_real_vs_real(in_tmp, capsys):
    assert main(["run", RECIPE, "run.dir=out", "train.steps=3", "train.progress=false",
                 "sample.n=2", "evaluate.likelihood.k=2", "evaluate.max_examples=8",
                 "evaluate.metric_samples=20"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((in_tmp / "out" / "evaluation.json").read_text())
    assert report["metric_samples"] == 20
    assert list(report["metrics"]) == ["core:mmd", "core:patch-swd", "core:copy-rate"]
    for entry in report["metrics"].values():
        assert set(entry) == {"model", "real_vs_real", "reference"}
    swd = report["metrics"]["core:patch-swd"]
    assert swd["model"] > swd["real_vs_real"] > 0  # 3 steps: far from the data
    assert "20 samples vs 20 test examples" in swd["reference"]
    assert "1000 train examples" in report["metrics"]["core:copy-rate"]["reference"]
    assert "core:patch-swd" in printed and "real vs real" in printed
    saved = (in_tmp / "out" / "recipe.toml").read_text()
    assert '"core:copy-rate"' in saved  # the modality's default, written out


def test_an_unknown_metric_fails_before_training(in_tmp, capsys):
    assert main(["run", RECIPE, "run.dir=out", "train.progress=false",
                 'evaluate.metrics=["core:mdd"]']) != 0
    err = capsys.readouterr().err
    assert "[evaluate] metrics: unknown metric 'core:mdd'. Did you mean 'core:mmd'?" in err
    assert not (in_tmp / "out").exists()
