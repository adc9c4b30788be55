"""The texture modality: images (the image plugin's codec) whose samples tile."""

from __future__ import annotations

from dgm.contract import Modality, Representation
from dgm_image.codec import read_image, write_image
from dgm_texture.previews import write_tiled_grid


def texture_modality() -> Modality:
    """Textures as (C, H, W) tensors in [-1, 1], PNG files, 2x2-tiled previews, seamless
    any-size networks by default."""
    return Modality(
        name="texture:texture",
        read=read_image,
        write=write_image,
        preview=write_tiled_grid,
        file_suffix=".png",
        representation=Representation("pixels", metadata={"range": [-1.0, 1.0]}),
        networks={"denoiser": "texture:unet", "generator": "texture:spatial-generator",
                  "critic": "texture:patch-critic"},
        likelihood="core:discretized-logistic",
        metrics=["core:patch-swd", "texture:seam", "texture:copy"],
    )
