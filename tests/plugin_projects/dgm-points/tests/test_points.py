"""The points plugin passes dgm's conformance kit, and ships its recipes."""

from dgm.testing import ModalityConformance


class TestCloudConformance(ModalityConformance):
    modality = "points:cloud"
    dataset = "points:rings"
    dataset_settings = {"points": 16, "size": 64}
    families = ["core:vae", "core:flow", "core:diffusion"]
    recipe_overrides = {"core:diffusion": {"networks": {"denoiser": {"hidden": 32}}}}


def test_the_plugin_ships_its_recipes(dgm_host):
    names = {entry.name for entry in dgm_host.registry.entries("recipes")}
    assert {"points:points-vae", "points:points-flow", "points:points-diffusion"} <= names
