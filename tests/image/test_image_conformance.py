"""The image plugin passes dgm's conformance kit (dgm.testing.ModalityConformance)."""

from __future__ import annotations

from dgm.testing import ModalityConformance


class TestImageConformance(ModalityConformance):
    modality = "image:image"
    dataset = "image:digits"
    families = ["core:vae", "core:flow", "core:diffusion", "core:autoregressive", "core:gan"]
    recipe_overrides = {
        "core:autoregressive": {"networks": {"autoregressive": {"hidden": 8, "layers": 2}}},
        "core:flow": {"networks": {"coupling": {"hidden": 8}}},
        "core:diffusion": {"networks": {"denoiser": {
            "channels": [32, 32], "layers_per_block": 1, "attention": [False, False]}}},
    }
