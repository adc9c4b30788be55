"""Spectral metrics and the digit classifier."""

from __future__ import annotations

import pytest
import torch

from dgm_audio.datasets import spoken_digits
from dgm_audio.intelligibility import accuracy_on_test_voices, train_classifier
from dgm_audio.metrics import frechet_mel, log_spectral_distance, mr_stft_distance


@pytest.fixture(scope="module")
def speech():
    return spoken_digits("train", representation="waveform", duration=0.5).examples[:64]


@pytest.mark.slow
@pytest.mark.parametrize("metric", [mr_stft_distance, log_spectral_distance, frechet_mel])
def test_a_set_is_near_itself_and_far_from_noise(metric, speech):
    a, b = speech[:32], speech[32:]
    noise = 0.3 * torch.randn_like(a)
    same = metric(a, a)
    other_speech = metric(a, b)
    to_noise = metric(noise, b)
    assert abs(same) < 1e-6
    assert to_noise > 3 * other_speech


def test_log_mel_data_works_for_spectral_metrics():
    mel = spoken_digits("val").examples
    assert log_spectral_distance(mel[:40], mel[:40]) < 1e-9
    assert frechet_mel(mel[:40], mel[40:]) < frechet_mel(torch.rand_like(mel[:40]), mel[40:])
    with pytest.raises(ValueError, match="waveforms"):
        mr_stft_distance(mel, mel)


@pytest.mark.slow
def test_digit_classifier_hears_unseen_voices_well_above_chance(tmp_path):
    model = train_classifier(tmp_path, echo=lambda _: None, epochs=4)
    assert accuracy_on_test_voices(model) > 0.5  # chance is 0.1
    assert list(tmp_path.glob("digit-classifier-*.safetensors"))  # cached
