"""The conformance kit checks what each declared role means, not only its shapes: a
PixelCNN that sees its own pixel, or a coupling network that does not start at zero,
fails with a message that says so."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgm import hookimpl
from dgm.assembly import BuildContext
from dgm.contract import AUTOREGRESSIVE, COUPLING, DataInfo, Modality
from dgm.recipes import Recipe
from dgm.testing import check_role, registered_plugin
from dgm_image.flow_networks import CouplingNet

INFO = DataInfo("image:image", (1, 4, 4), levels=17)


class Peeking(nn.Module):
    """A 'causal' network whose params at each pixel see that pixel itself."""

    def __init__(self, data_shape, param_channels) -> None:
        super().__init__()
        self.conv = nn.Conv2d(data_shape[0], param_channels * data_shape[0], 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def unzeroed(in_channels: int, out_channels: int) -> nn.Module:
    """The image plugin's coupling network with its zero start undone."""
    net = CouplingNet(in_channels, out_channels)
    for p in net.parameters():
        nn.init.normal_(p, std=0.1)
    return net


class Broken:
    @hookimpl
    def register_networks(self, register):
        register("peeking", Peeking)
        register("unzeroed", unzeroed)


def context(host, **networks: str) -> BuildContext:
    modality = Modality("test:grid", read=print, write=print, preview=print,
                        networks=networks, likelihood="core:gaussian")
    return BuildContext(Recipe({}, "kit"), host.registry, INFO, modality)


def test_a_causal_pixelcnn_passes_and_a_peeking_network_is_caught(host):
    examples = torch.randn(2, 1, 4, 4)
    ctx = context(host, autoregressive="image:pixelcnn")
    check_role("test:grid", ctx, AUTOREGRESSIVE, examples)  # the real PixelCNN is causal
    check_role("test:grid", ctx, AUTOREGRESSIVE, examples, condition_dim=3)
    with registered_plugin(Broken(), "broken", host):
        ctx = context(host, autoregressive="broken:peeking")
        with pytest.raises(AssertionError, match=r"Peeking is not causal: the params of "
                           r"element \(channel 0, position \(0, 0\)\) depend on 4 element"):
            check_role("test:grid", ctx, AUTOREGRESSIVE, examples)


def test_a_coupling_network_that_does_not_start_at_zero_is_caught(host):
    examples = torch.randn(2, 1, 4, 4)
    check_role("test:grid", context(host, coupling="image:coupling-net"), COUPLING, examples)
    with registered_plugin(Broken(), "broken", host):
        ctx = context(host, coupling="broken:unzeroed")
        with pytest.raises(AssertionError, match="should start at zero output, so that "
                           "each coupling starts as the identity"):
            check_role("test:grid", ctx, COUPLING, examples)
