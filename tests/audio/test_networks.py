"""Audio networks: shapes, WaveNet causality, and its cached sampler."""

from __future__ import annotations

import pytest
import torch

from dgm.likelihoods import Categorical
from dgm_audio.networks import MelDecoder, MelEncoder, WaveDecoder, WaveEncoder, WaveNet


def test_encoders_and_decoders_match_the_data_shape():
    for encoder, decoder, shape in ((WaveEncoder, WaveDecoder, (1, 2048)),
                                    (MelEncoder, MelDecoder, (1, 32, 64)),
                                    (MelEncoder, MelDecoder, (1, 20, 30))):
        x = torch.randn(3, *shape)
        assert encoder(shape, latent_dim=8)(x).shape == (3, 16)
        assert decoder(shape, latent_dim=8, param_channels=2)(torch.randn(3, 8)).shape == (
            3, 2, *shape[1:])


def test_wavenet_is_causal():
    torch.manual_seed(0)
    net = WaveNet((1, 100), param_channels=4, residual=8, skip=8, layers=6, cycle=3).eval()
    x = torch.rand(1, 1, 100) * 2 - 1
    changed = x.clone()
    changed[..., 40] = -changed[..., 40]
    a, b = net(x), net(changed)
    assert torch.equal(a[..., :41], b[..., :41])  # position 40's params never see x[40]
    assert not torch.allclose(a[..., 41:], b[..., 41:])


@pytest.mark.slow
def test_cached_generation_equals_sampling_through_forward():
    torch.manual_seed(0)
    net = WaveNet((1, 48), param_channels=256, residual=8, skip=16, layers=5, cycle=3).eval()
    likelihood = Categorical(256)
    fast = net.generate(2, 48, likelihood, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    slow = torch.zeros(2, 1, 48)
    with torch.no_grad():
        for t in range(48):
            slow[..., t:t + 1] = likelihood.sample(net(slow)[..., t:t + 1], generator)
    assert torch.equal(fast, slow)
