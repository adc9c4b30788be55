"""Representations: mu-law bounds, log-mel inversion, metadata checks."""

from __future__ import annotations

import math

import pytest
import torch

from dgm.contract import DataInfo
from dgm.likelihoods import Categorical
from dgm_audio.datasets import spoken_digits
from dgm_audio.modality import audio_modality
from dgm_audio.representations import (
    RepresentationMismatch,
    check_compatible,
    from_metadata,
    make_representation,
)


def test_mu_law_lies_on_the_256_level_grid_and_round_trips_within_a_bound():
    rep = make_representation("mu-law", sample_rate=4000, mu=255)
    wave = torch.linspace(-1, 1, 4001)[None]
    coded = rep.forward(wave)
    Categorical(256).check_data(coded)  # on the grid a 256-level likelihood models
    back = rep.inverse(coded)
    # at most half a step of the companded grid mapped back: mu-law's steps grow with
    # |x|, from about 1e-4 near silence to 0.03 at full scale
    half_step = (1 + 255 * wave.abs()) * math.log(256) / 255**2
    error = (back - wave).abs()
    assert (error <= 1.05 * half_step + 1e-6).all()
    assert error.max() < 0.035 and error[:, 1990:2010].max() < 3e-4


def test_log_mel_inverse_is_close_in_log_mel():
    data = spoken_digits("test", representation="log-mel", digits=[7])
    rep = from_metadata(data.info.source["representation"])
    x = data.examples[:4]
    wave = rep.inverse(x)
    assert wave.shape == (4, 1, 8192) and wave.abs().max() <= 1
    again = rep.forward(wave)
    loud = x > -0.5  # where there is speech (silence sits at the floor, about -1)
    # stated tolerance: mean error 0.1 in normalised units (1 nat, about 4.3 dB)
    assert (again - x)[loud].abs().mean() < 0.1
    assert (again - x).abs().mean() < 0.1


def test_mismatched_metadata_names_both_settings():
    trained = make_representation("log-mel", n_mels=64).metadata
    inverse = make_representation("log-mel", n_mels=80).metadata
    with pytest.raises(RepresentationMismatch, match="n_mels=64.*n_mels=80"):
        check_compatible(trained, inverse)
    check_compatible(trained, dict(trained))


def test_the_modality_inverts_with_the_runs_own_settings():
    meta = make_representation("log-mel", n_mels=16, hop=64).metadata
    info = DataInfo("audio:audio", (1, 16, 32), source={"representation": meta})
    modality = audio_modality(info)
    assert modality.representation.metadata == meta
    assert modality.representation.inverse(torch.zeros(1, 1, 16, 32)).shape[-1] == 32 * 64
    bad = {**meta, "n_mels": 80, "griffin": 1}
    with pytest.raises(RepresentationMismatch, match="griffin"):
        audio_modality(DataInfo("audio:audio", (1, 80, 32), source={"representation": bad}))


def test_unknown_representation_is_an_error():
    with pytest.raises(ValueError, match="log-mel"):
        make_representation("mfcc")
