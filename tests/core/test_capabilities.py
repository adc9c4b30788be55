"""Capabilities are declared and checked: a misspelt one is an error, a declared one
must have its members, and hook API 1 networks keep their abilities with a warning."""

from __future__ import annotations

import pytest
from torch import nn

from dgm import hookimpl
from dgm.assembly import build_family
from dgm.capabilities import FULLY_CONVOLUTIONAL, CapabilityError, declared, has
from dgm.contract import DataInfo
from dgm.recipes import Recipe
from dgm.sizes import sample_shape
from dgm.testing import registered_plugin


class Typo(nn.Module):
    capabilities = frozenset({"fully-convolutinal"})
    size_multiple = 4


class Promises(nn.Module):
    capabilities = frozenset({"spatial-latents"})

    def latents_shape(self, data_shape):  # not the member the capability names
        return data_shape


class Legacy(nn.Module):
    size_multiple = 4


class Declares(nn.Module):
    capabilities = frozenset({"fully-convolutional"})
    size_multiple = 4


def test_a_misspelt_capability_is_an_error_with_the_closest_name():
    with pytest.raises(CapabilityError, match="Typo declares an unknown capability "
                       "'fully-convolutinal'; did you mean 'fully-convolutional'"):
        has(Typo(), FULLY_CONVOLUTIONAL)


def test_a_declared_capability_needs_its_members():
    with pytest.raises(CapabilityError, match="Promises declares 'spatial-latents' but has "
                       "no latent_shape"):
        declared(Promises())


def test_declared_and_legacy_networks_sample_at_other_sizes():
    assert sample_shape((3, 8, 8), (16, 12), Declares(), "denoiser") == (3, 16, 12)
    with pytest.warns(DeprecationWarning, match="Legacy has size_multiple but declares no "
                      "capabilities; add capabilities = frozenset"):
        assert sample_shape((3, 8, 8), (16, 12), Legacy(), "denoiser") == (3, 16, 12)
    with pytest.raises(ValueError, match="makes only the training size"):
        sample_shape((3, 8, 8), (16, 12), nn.Linear(1, 1), "denoiser")


class TypoDenoiser(nn.Module):
    capabilities = frozenset({"fully-convolutinal"})

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = nn.Conv2d(data_shape[0], data_shape[0], 1)

    def forward(self, x, t, condition=None):
        return self.net(x)


class Networks:
    @hookimpl
    def register_networks(self, register):
        register("typo-denoiser", TypoDenoiser)


def test_the_builder_refuses_a_network_with_a_misspelt_capability(host):
    recipe = Recipe({"data": {"name": "image:digits"}, "family": {"name": "core:diffusion"},
                     "networks": {"denoiser": {"name": "caps:typo-denoiser"}}}, "r.toml")
    with registered_plugin(Networks(), "caps", host), \
            pytest.raises(CapabilityError, match="TypoDenoiser declares an unknown"):
        build_family(recipe, host.registry, DataInfo("image:image", (1, 8, 8), levels=17))
