"""The image modality: codec, defaults and previews."""

from __future__ import annotations

from dgm.contract import DataInfo, Modality, Representation
from dgm_image.codec import reader_for, write_image
from dgm_image.previews import write_grid


def image_modality(info: DataInfo | None = None) -> Modality:
    """Images as (C, H, W) tensors in [-1, 1]; PNG files; sample grids as previews.
    Files are read with the run's number of channels (1: grey, else RGB)."""
    return Modality(
        name="image:image",
        read=reader_for(info),
        write=write_image,
        preview=write_grid,
        file_suffix=".png",
        representation=Representation("pixels", metadata={"range": [-1.0, 1.0]}),
        networks={"encoder": "image:conv-encoder", "decoder": "image:conv-decoder",
                  "denoiser": "core:unet2d", "coupling": "image:coupling-net",
                  "generator": "image:dcgan-generator", "critic": "image:dcgan-critic",
                  "autoregressive": "image:pixelcnn"},
        likelihood="core:discretized-logistic",
        metrics=["core:mmd", "core:patch-swd", "core:copy-rate"],
    )
