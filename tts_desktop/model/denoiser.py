"""NVIDIA's WaveGlow denoiser: subtract the model's own bias spectrum from the audio's magnitudes.

WaveGlow leaves a faint constant hiss/whine. Its spectrum is measured once by vocoding a silent
mel (all zeros, 88 frames, sigma 0) and taking the first STFT frame; at call time that spectrum,
times `strength`, is subtracted from every frame's magnitude (floored at 0) and the audio is
rebuilt with the original phase.
"""

from __future__ import annotations

import numpy as np

from .stft import STFT


class Denoiser:
    def __init__(self, waveglow, n_mel_channels: int = 80, mode: str = "zeros", filter_length: int = 1024,
                 n_overlap: int = 4, win_length: int = 1024, rng: np.random.Generator | None = None):
        self.stft = STFT(filter_length, filter_length // n_overlap, win_length)
        if mode == "zeros":
            mel = np.zeros((1, n_mel_channels, 88), dtype=np.float32)
        elif mode == "normal":
            rng = rng if rng is not None else np.random.default_rng()
            mel = rng.standard_normal((1, n_mel_channels, 88), dtype=np.float32)
        else:
            raise ValueError(f"denoiser mode {mode!r} is not 'zeros' or 'normal'")
        bias_audio = waveglow.infer(mel, sigma=0.0)
        magnitude, _ = self.stft.transform(bias_audio)
        self.bias_spec = magnitude[:, :, :1]  # (1, N/2+1, 1): the first frame, for every frame

    def __call__(self, audio: np.ndarray, strength: float = 0.01) -> np.ndarray:
        """audio (B, n) -> (B, (n // hop) * hop); WaveGlow's n is a multiple of hop, so unchanged."""
        magnitude, phase = self.stft.transform(audio)
        magnitude = np.maximum(magnitude - self.bias_spec * np.float32(strength), 0.0)
        return self.stft.inverse(magnitude, phase)
