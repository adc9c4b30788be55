"""The core's own entries, registered through the same hooks as any plugin (entry point
``core`` in the ``dgm`` group)."""

from __future__ import annotations

from dgm import hookimpl
from dgm.conditions import ClassEmbedding, TensorEncoder, TokenEncoder
from dgm.denoisers import Conv1dDenoiser, MLPDenoiser, UNet2DDenoiser
from dgm.families.autoregressive import build_autoregressive
from dgm.families.diffusion import build_diffusion
from dgm.families.flow import build_flow
from dgm.families.gan import build_gan
from dgm.families.vae import build_vae
from dgm.hookspecs import Register
from dgm.latents import latent_modality, latents
from dgm.likelihoods import (
    Bernoulli,
    Categorical,
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    Gaussian,
)
from dgm.metrics import copy_rate, kernel_mmd, patch_swd
from dgm.priors import StandardNormal


@hookimpl
def register_families(register: Register) -> None:
    register("vae", build_vae, "Variational autoencoder: ELBO training, IWAE evaluation")
    register("autoregressive", build_autoregressive, "Autoregressive model (PixelCNN, ...): "
             "exact NLL training and evaluation, ancestral sampling")
    register("flow", build_flow, "Multi-scale normalizing flow (RealNVP/Glow): exact NLL, "
             "dequantization bound on discrete data")
    register("gan", build_gan, "Generative adversarial network: non-saturating or hinge "
             "loss, R1 penalty, spectral norm; implicit (sample metrics only)")
    register("diffusion", build_diffusion, "Denoising diffusion with diffusers schedulers; "
             "DDPM/DDIM/DPM-Solver++ sampling; variational NLL bound")


@hookimpl
def register_likelihoods(register: Register) -> None:
    register("gaussian", Gaussian, "Diagonal Gaussian with learned log-scale")
    register("bernoulli", Bernoulli, "Independent Bernoulli for binary data")
    register("discretized-logistic", DiscretizedLogistic,
             "Logistic integrated over the bins of k-level data in [-1, 1]")
    register("categorical", Categorical, "Categorical over the k levels of data in [-1, 1]")
    register("discretized-logistic-mixture", DiscretizedLogisticMixture,
             "Mixture of discretized logistics per element (PixelCNN++), k-level data")


@hookimpl
def register_priors(register: Register) -> None:
    register("standard-normal", StandardNormal, "N(0, I) over latents")


@hookimpl
def register_metrics(register: Register) -> None:
    register("mmd", kernel_mmd, "Unbiased kernel MMD^2, Gaussian kernels at 0.5/1/2 x the "
             "median distance")
    register("patch-swd", patch_swd, "Sliced Wasserstein distance between Laplacian-pyramid "
             "patches (images)")
    register("copy-rate", copy_rate, "Share of samples nearly duplicating a training "
             "example (NN distance <= 1/3 of the typical train-to-train NN distance)")


@hookimpl
def register_modalities(register: Register) -> None:
    register("latent", latent_modality, "Latent vectors of a trained autoencoder run; "
             "samples decode through it")


@hookimpl
def register_datasets(register: Register) -> None:
    register("latents", latents, "Posterior means of a trained autoencoder's data "
             "(data.run = its run folder)")


@hookimpl
def register_networks(register: Register) -> None:
    register("class-embedding", ClassEmbedding, "Condition encoder for class conditions: "
             "a learned vector per class (the default [networks.condition])")
    register("token-encoder", TokenEncoder, "Condition encoder for token conditions (text): "
             "embeddings, a small transformer over the real tokens, mean pooled")
    register("tensor-encoder", TensorEncoder, "Condition encoder for tensor conditions (a "
             "thumbnail, a mel): convolutions, pooled, flattened, projected")
    register("unet2d", UNet2DDenoiser, "diffusers UNet2DModel denoiser for (C, H, W) arrays "
             "(x_t, t, condition); circular padding on request")
    register("conv1d-denoiser", Conv1dDenoiser, "Residual 1-D conv denoiser for (C, L) "
             "signals; circular padding on request")
    register("mlp-denoiser", MLPDenoiser, "Residual MLP denoiser for flat vectors (latents)")
