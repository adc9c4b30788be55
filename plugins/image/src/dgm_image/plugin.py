"""Registers the image modality's entries with dgm (entry point ``image``)."""

from __future__ import annotations

from pathlib import Path

from dgm import hookimpl
from dgm.hookspecs import Register
from dgm_image import datasets, networks
from dgm_image.flow_networks import CouplingNet
from dgm_image.gan_networks import DCGANCritic, DCGANGenerator
from dgm_image.modality import image_modality
from dgm_image.pixelcnn import PixelCNN

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_modalities(register: Register) -> None:
    register("image", image_modality, "Images: (C, H, W) in [-1, 1], PNG codec, grids")


@hookimpl
def register_datasets(register: Register) -> None:
    register("digits", datasets.digits, "8x8 digits, 17 levels, 1000/350/447 split")
    register("folder", datasets.folder, "Your own images from a folder")


@hookimpl
def register_networks(register: Register) -> None:
    register("mlp-encoder", networks.MLPEncoder, "MLP encoder to q(z|x) statistics")
    register("mlp-decoder", networks.MLPDecoder, "MLP decoder to likelihood parameters")
    register("conv-encoder", networks.ConvEncoder, "Strided-conv encoder")
    register("conv-decoder", networks.ConvDecoder, "Transposed-conv decoder")
    register("pixelcnn", PixelCNN, "Gated PixelCNN with channel masks (autoregressive)")
    register("dcgan-generator", DCGANGenerator, "DCGAN generator: z to an image in [-1, 1]")
    register("dcgan-critic", DCGANCritic, "DCGAN critic: strided convs to one score")
    register("coupling-net", CouplingNet, "Conv shift/log-scale net for flow couplings")


@hookimpl
def register_recipes(register: Register) -> None:
    for path in sorted(RECIPES.glob("*.toml")):
        register(path.stem, path, "recipe shipped with dgm-image")
