"""`dgm evaluate` prints one table, a row per run, for families of every kind."""

from __future__ import annotations

import json

import pytest

from dgm.cli import main
from dgm.errors import RunDirError
from tests.conftest import REPO

QUICK = ["train.steps=2", "train.progress=false", "sample.n=2", "evaluate.max_examples=6",
         "evaluate.metric_samples=6"]


@pytest.mark.slow
def test_one_table_for_several_runs_and_from_saved_results(in_tmp, capsys):
    assert main(["run", str(REPO / "recipes/image/digits-vae.toml"), "run.dir=vae",
                 "evaluate.likelihood.k=3", *QUICK]) == 0
    assert main(["run", str(REPO / "recipes/image/digits-diffusion.toml"), "run.dir=diff",
                 "family.timesteps=10", "networks.denoiser.channels=[8, 16]",
                 "networks.denoiser.norm_groups=4", "evaluate.likelihood.timesteps=0",
                 *QUICK]) == 0
    capsys.readouterr()
    assert main(["evaluate", "vae", "diff", "--saved"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[2:4]
    for column in ("family", "likelihood", "NLL (nats/example)", "bits/dim",
                   "core:mmd (real vs real)", "core:patch-swd (real vs real)"):
        assert column in header
    assert "VAE" in rows[0] and "bound: IWAE, k=3" in rows[0]
    assert "Diffusion" in rows[1] and "all 10 timesteps" in rows[1]
    report = json.loads((in_tmp / "diff" / "evaluation.json").read_text())
    assert f"{report['nll_nats']:.2f}" in rows[1] and f"{report['bits_per_dim']:.3f}" in rows[1]
    assert "uniform model over the data's levels 181.33 nats/example" in "\n".join(lines)

    (in_tmp / "diff" / "evaluation.json").unlink()
    with pytest.raises(RunDirError, match="has no evaluation.json"):
        main(["--traceback", "evaluate", "vae", "diff", "--saved"])
    assert main(["evaluate", "diff"]) == 0  # recomputes and saves it again
    assert (in_tmp / "diff" / "evaluation.json").is_file()


@pytest.mark.slow
def test_a_density_on_continuous_data_is_reported_with_its_caveat(in_tmp, capsys):
    """Log-mel spectrograms have no levels: no uniform reference, and a note that the
    figure is a density, in the summary and under the table."""
    assert main(["run", str(REPO / "recipes/speech/digits-mel-vae.toml"), "run.dir=mel",
                 "evaluate.likelihood.k=2", *QUICK]) == 0
    report = json.loads((in_tmp / "mel" / "evaluation.json").read_text())
    assert "uniform_nll_nats" not in report
    assert report["note"].startswith("continuous data: the NLL is of a density")
    capsys.readouterr()
    assert main(["evaluate", "mel", "--saved"]) == 0
    out = capsys.readouterr().out
    assert "digits-mel-vae: continuous data: the NLL is of a density" in out
