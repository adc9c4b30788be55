"""Records torchaudio's outputs for the functions dgm_audio.signal_processing provides,
on four embedded spoken digits, into torchaudio_reference.safetensors beside this file
(read by tests/audio/test_signal_processing.py). Needs torchaudio, so it runs in the
pinned development environment (torch 2.11.0 + torchaudio 2.11.0):

    .venv/bin/python tests/audio/reference/make_torchaudio_reference.py

Only torchaudio, torch and soundfile compute what is recorded; dgm_audio supplies the
file names and the centring of a clip in its window (``fit_length``)."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF
import torchaudio.transforms as T
from safetensors.torch import save_file

from dgm_audio.datasets import DIGITS_DIR, fit_length

HERE = Path(__file__).parent
FILES = ["1_en-gb-x-rp_m5_s145_p35.flac", "4_en-gb-x-rp_m5_s145_p35.flac",
         "7_en-gb-x-rp_m5_s145_p35.flac", "9_en-gb-x-rp_m5_s145_p35.flac"]
RATE, LENGTH, N_FFT, HOP, N_MELS, ITERS = 8000, 8192, 512, 128, 32, 32
FLOOR, CENTER, SCALE = 1e-5, -1.5, 10.0


def spectral_convergence(target_power: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
    """``|| |S| - |STFT(wave)| ||_F / || |S| ||_F`` for a power spectrogram ``S``."""
    rebuilt = T.Spectrogram(N_FFT, hop_length=HOP, power=1.0)(wave)
    target = target_power.sqrt()
    return torch.linalg.norm(rebuilt - target) / torch.linalg.norm(target)


def main() -> None:
    out: dict[str, torch.Tensor] = {}
    mel = T.MelSpectrogram(RATE, n_fft=N_FFT, hop_length=HOP, f_min=0.0, f_max=RATE / 2,
                           n_mels=N_MELS, power=2.0, window_fn=torch.hann_window)
    power = T.Spectrogram(N_FFT, hop_length=HOP, power=2.0)
    inverse = T.InverseMelScale(N_FFT // 2 + 1, N_MELS, RATE, 0.0, RATE / 2)
    window = torch.hann_window(N_FFT)
    for i, name in enumerate(FILES):
        audio, rate = sf.read(str(DIGITS_DIR / name), dtype="float32", always_2d=True)
        raw = torch.from_numpy(audio.T.copy()).mean(0, keepdim=True)
        wave = fit_length(AF.resample(raw, rate, RATE), LENGTH)
        out[f"wave_{i}"] = wave
        frames = LENGTH // HOP
        out[f"log_mel_{i}"] = (torch.log(mel(wave)[..., :frames] + FLOOR) - CENTER) / SCALE
        target = power(wave)
        vocoded = AF.griffinlim(target, window, N_FFT, HOP, N_FFT, 2.0, ITERS, 0.99,
                                LENGTH, False)
        out[f"griffin_lim_convergence_{i}"] = spectral_convergence(target, vocoded)
        if i == 0:
            out["raw_16k_0"] = raw
            out["resampled_16k_to_22050_0"] = AF.resample(raw[:, :4096], 16000, 22050)
            out["resampled_16k_to_11025_0"] = AF.resample(raw[:, :4096], 16000, 11025)
            out["inverse_mel_0"] = inverse(mel(wave))
    out["filter_bank"] = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, RATE / 2, N_MELS, RATE)
    grid = torch.linspace(-1, 1, 4001)
    out["mu_law_grid"] = grid
    out["mu_law_encoded"] = AF.mu_law_encoding(grid, 256)
    out["mu_law_decoded"] = AF.mu_law_decoding(torch.arange(256), 256)
    save_file({k: v.contiguous() for k, v in out.items()},
              HERE / "torchaudio_reference.safetensors",
              metadata={"torchaudio": torchaudio.__version__, "torch": torch.__version__,
                        "files": ",".join(FILES)})


if __name__ == "__main__":
    main()
