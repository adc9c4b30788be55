"""The audio plugin passes dgm's conformance kit (dgm.testing.ModalityConformance) in
its log-mel representation (Griffin-Lim inverse: lossy, so only shapes are checked)
and as mu-law codes (an exact inverse up to the 16-bit WAV file)."""

from __future__ import annotations

import pytest

from dgm.testing import ModalityConformance

pytestmark = pytest.mark.slow  # trains, installs or starts processes: not in the fast tier

SMALL = {"sample_rate": 4000, "duration": 0.256, "digits": [1, 2]}


class TestLogMelConformance(ModalityConformance):
    modality = "audio:audio"
    dataset = "audio:spoken-digits"
    dataset_settings = {**SMALL, "representation": "log-mel", "n_fft": 256, "hop": 64,
                        "n_mels": 16}
    families = ["core:vae", "core:diffusion"]
    inverse_atol = None
    codec_atol = 0.1
    recipe_overrides = {
        "core:vae": {"networks": {"encoder": {"channels": [8, 16]},
                                  "decoder": {"channels": [8, 16]}}},
        "core:diffusion": {"networks": {"denoiser": {
            "channels": [32, 32], "layers_per_block": 1, "attention": [False, False]}}},
    }


class TestMuLawConformance(ModalityConformance):
    modality = "audio:audio"
    dataset = "audio:spoken-digits"
    dataset_settings = {**SMALL, "representation": "mu-law", "mu": 15}
    families = ["core:vae"]
    recipe_overrides = {"core:vae": {"networks": {"encoder": {"channels": [8, 16]},
                                                  "decoder": {"channels": [8, 16]}}}}
