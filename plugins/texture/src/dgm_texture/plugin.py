"""Registers the texture modality's entries with dgm (entry point ``texture``)."""

from __future__ import annotations

from dgm import hookimpl
from dgm.hookspecs import Register
from dgm_texture import datasets, metrics, networks
from dgm_texture.modality import texture_modality


@hookimpl
def register_modalities(register: Register) -> None:
    register("texture", texture_modality, "Seamless textures: PNG codec, 2x2-tiled previews")


@hookimpl
def register_datasets(register: Register) -> None:
    register("exemplar", datasets.exemplar,
             "Crops of exemplar photos (embedded brick, grass, gravel, or a path)")


@hookimpl
def register_networks(register: Register) -> None:
    register("unet", networks.texture_unet,
             "diffusers UNet, circular padding, no attention: any size, tiles")
    register("spatial-generator", networks.SpatialGenerator,
             "Spatial GAN generator: noise map to texture, circular padding")
    register("patch-critic", networks.PatchCritic,
             "Fully convolutional critic, unpadded convs, mean patch score")


@hookimpl
def register_metrics(register: Register) -> None:
    register("seam", metrics.seam_metric, "Gradient energy across tile borders / interior")
    register("copy", metrics.copy_metric, "Share of patches copied from the exemplar")
