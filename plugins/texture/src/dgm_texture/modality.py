"""The texture modality: images (the image plugin's codec) whose samples tile."""

from __future__ import annotations

from dgm.contract import DataInfo, Modality, Representation
from dgm_image.codec import reader_for, write_image
from dgm_texture.previews import write_tiled_grid


def texture_modality(info: DataInfo | None = None) -> Modality:
    """Textures as (C, H, W) tensors in [-1, 1], PNG files (read with the run's number of
    channels), 2x2-tiled previews, seamless any-size networks by default."""
    return Modality(
        name="texture:texture",
        read=reader_for(info),
        write=write_image,
        preview=write_tiled_grid,
        file_suffix=".png",
        representation=Representation("pixels", metadata={"range": [-1.0, 1.0]}),
        networks={"denoiser": "texture:unet", "generator": "texture:spatial-generator",
                  "critic": "texture:patch-critic"},
        likelihood="core:discretized-logistic",
        metrics=["core:patch-swd", "texture:seam", "texture:copy"],
    )
