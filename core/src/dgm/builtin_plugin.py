"""The core's own entries, registered through the same hooks as any plugin (entry point
``core`` in the ``dgm`` group)."""

from __future__ import annotations

from dgm import hookimpl
from dgm.families.vae import build_vae
from dgm.hookspecs import Register
from dgm.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian
from dgm.metrics import copy_rate, kernel_mmd, patch_swd
from dgm.priors import StandardNormal


@hookimpl
def register_families(register: Register) -> None:
    register("vae", build_vae, "Variational autoencoder: ELBO training, IWAE evaluation")


@hookimpl
def register_likelihoods(register: Register) -> None:
    register("gaussian", Gaussian, "Diagonal Gaussian with learned log-scale")
    register("bernoulli", Bernoulli, "Independent Bernoulli for binary data")
    register("discretized-logistic", DiscretizedLogistic,
             "Logistic integrated over the bins of k-level data in [-1, 1]")


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
