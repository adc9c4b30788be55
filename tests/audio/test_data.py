"""Data sets: the embedded spoken digits and a folder of recordings."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from dgm.errors import DataError
from dgm_audio.datasets import DIGITS_DIR, folder, spoken_digits


def test_spoken_digits_are_split_by_voice_and_small():
    with open(DIGITS_DIR / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    voices = {s: {r["voice"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"]
    assert not voices["val"] & voices["test"]
    assert len(voices["test"]) >= 8
    size = sum(p.stat().st_size for p in DIGITS_DIR.iterdir())
    assert size < 10e6
    for split in ("train", "test"):
        assert {int(r["digit"]) for r in rows if r["split"] == split} == set(range(10))


@pytest.mark.slow
def test_spoken_digits_yield_the_recipes_shapes():
    mel = spoken_digits("val")
    assert mel.info.shape == (1, 32, 64) and mel.info.classes[7] == "seven"
    assert len(mel) == 80 and set(mel.c.tolist()) == set(range(10))
    mu = spoken_digits("val", representation="mu-law", sample_rate=4000, duration=0.512)
    assert mu.info.shape == (1, 2048) and mu.info.levels == 256
    assert mu.info.source["representation"] == {"kind": "mu-law", "sample_rate": 4000,
                                                "mu": 255}


def _tone(path, peak=0.5, n=800):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (peak * np.sin(np.arange(n) / 3.0)).astype(np.float32), 8000,
             subtype="PCM_16")


def test_folder_labels_come_from_sub_folders(tmp_path):
    for word in ("yes", "no"):
        for i in range(5):
            _tone(tmp_path / word / f"{i}.wav")
    data = folder("train", str(tmp_path), representation="waveform", duration=0.1,
                  val_fraction=0, test_fraction=0)
    assert data.info.classes == ("no", "yes") and len(data) == 10
    assert sorted(data.c.tolist()) == [0] * 5 + [1] * 5
    assert data.info.shape == (1, 800)


def test_folder_bad_files_are_named_or_skipped_with_a_warning(tmp_path):
    _tone(tmp_path / "good.wav")
    _tone(tmp_path / "quiet.wav", peak=0.0)
    (tmp_path / "broken.flac").write_bytes(b"junk")
    settings = {"representation": "waveform", "duration": 0.1, "val_fraction": 0,
                "test_fraction": 0}
    full = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "short.wav").write_bytes(full[:44 + 256])  # header says more samples
    with pytest.raises(DataError, match=r"3 bad file\(s\): .*broken.flac.*quiet.wav.*is "
                                        r"silent.*short.wav.*is truncated: its header declares "
                                        r"\d+ samples, 128 are present.*skip_bad"):
        folder("train", str(tmp_path), **settings)
    with pytest.warns(UserWarning, match="skipped 3.*broken.flac.*quiet.wav.*short.wav"):
        data = folder("train", str(tmp_path), skip_bad=True, **settings)
    assert len(data) == 1 and data.c is None
    with pytest.raises(DataError, match="does not exist"):
        folder("train", str(tmp_path / "nowhere"))


def test_folder_says_which_clips_it_resampled_and_cut(tmp_path, recwarn):
    _tone(tmp_path / "a.wav", n=800)  # 0.1 s at 8 kHz
    sf.write(tmp_path / "b.wav", (0.5 * np.sin(np.arange(3200) / 3.0)).astype(np.float32),
             16000, subtype="PCM_16")  # 0.2 s at 16 kHz
    settings = {"representation": "waveform", "duration": 0.1, "val_fraction": 0,
                "test_fraction": 0}
    with pytest.warns(UserWarning) as caught:
        data = folder("train", str(tmp_path), **settings)
    message = str(caught[0].message)
    assert "1 of 2 training clips were resampled to 8000 Hz (data.sample_rate; 1 at 16000 Hz)" \
        in message
    assert "1 of 2 were longer than data.duration = 0.1 s" in message
    assert "the longest was 0.20 s" in message
    assert len(data) == 2
    recwarn.clear()
    folder("train", str(tmp_path), **{**settings, "duration": 0.2, "sample_rate": 16000})
    assert [str(w.message) for w in recwarn if "resampled" in str(w.message)] == [
        f"audio folder {str(tmp_path)!r}: 1 of 2 training clips were resampled to 16000 Hz "
        "(data.sample_rate; 1 at 8000 Hz). Set data.sample_rate and data.duration to keep "
        "them as they are; the other splits are treated the same"]


def test_folder_says_which_clips_it_mixed_down(tmp_path):
    _tone(tmp_path / "mono.wav")
    stereo = np.stack([0.5 * np.sin(np.arange(800) / 3.0)] * 2, axis=1).astype(np.float32)
    sf.write(tmp_path / "stereo.wav", stereo, 8000, subtype="PCM_16")
    with pytest.warns(UserWarning, match="1 of 2 had more than one channel and were mixed "
                                         "down to mono"):
        folder("train", str(tmp_path), representation="waveform", duration=0.1,
               val_fraction=0, test_fraction=0)
