"""The core's own entries, registered through the same hooks as any plugin (entry point
``core`` in the ``dgm`` group)."""

from __future__ import annotations

from dgm import hookimpl
from dgm.families.vae import build_vae
from dgm.hookspecs import Register
from dgm.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian
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
