"""The texture plugin passes dgm's conformance kit (dgm.testing.ModalityConformance)."""

from __future__ import annotations

from dgm.testing import ModalityConformance


class TestTextureConformance(ModalityConformance):
    modality = "texture:texture"
    dataset = "texture:exemplar"
    dataset_settings = {"image": "gravel", "crop": 16}
    families = ["core:diffusion", "core:gan"]
    recipe_overrides = {
        "core:diffusion": {"networks": {"denoiser": {"channels": [16, 16],
                                                     "norm_groups": 8}}},
        "core:gan": {"family": {"latent_dim": 4},
                     "networks": {"generator": {"channels": [16, 16, 8]},
                                  "critic": {"channels": [8, 16]}}},
    }
