"""Griffin-Lim vocoder: a log-mel spectrogram back to audio without WaveGlow.

Used where no neural vocoder is available (no weights yet, or to check a Tacotron2 mel by ear).
Two steps:
1. mel -> linear magnitude: undo the log, then the non-negative least-squares solution of
   mel_basis @ S = mel (projected gradient from the clipped pseudo-inverse, all frames at once).
2. magnitude -> audio: "fast" Griffin-Lim (Perraudin et al. 2013), i.e. the classic alternating
   projections with a momentum term, which converges in far fewer iterations than plain GL.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import AudioConfig
from .mel import mel_basis
from .stft import STFT


@lru_cache(maxsize=4)
def _nnls_operators(basis_key: tuple) -> tuple[np.ndarray, np.ndarray, float]:
    basis = mel_basis(*basis_key).astype(np.float64)
    pinv = np.linalg.pinv(basis)
    step = 1.0 / np.linalg.norm(basis @ basis.T, 2)  # 1 / Lipschitz constant of the gradient
    return basis, pinv, step


def mel_to_magnitude(mel: np.ndarray, audio_config: AudioConfig = AudioConfig(), n_iters: int = 100) -> np.ndarray:
    """log-mel (n_mels, T) -> non-negative linear magnitude (N/2+1, T) with mel_basis @ S ~= exp(mel)."""
    cfg = audio_config
    key = (cfg.sampling_rate, cfg.filter_length, mel.shape[0], cfg.mel_fmin, cfg.mel_fmax)
    basis, pinv, step = _nnls_operators(key)
    target = np.exp(np.asarray(mel, dtype=np.float64))
    s = np.maximum(pinv @ target, 0.0)
    for _ in range(n_iters):  # projected gradient on 0.5 * ||basis @ s - target||^2, s >= 0
        s = np.maximum(s - step * (basis.T @ (basis @ s - target)), 0.0)
    return s


def griffin_lim(mel: np.ndarray, audio_config: AudioConfig = AudioConfig(), n_iters: int = 60,
                rng: np.random.Generator | None = None, power: float = 1.0,
                momentum: float = 0.99, length: int | None = None) -> np.ndarray:
    """log-mel (n_mels, T) -> audio ((T-1)*hop,) float32, or `length` samples (zero-padded or cut):
    the backends ask for T*hop, WaveGlow's length for T frames, so both vocoders give a sentence
    the same duration.

    power > 1 sharpens the magnitudes (a common trick against Griffin-Lim's metallic smear);
    momentum 0 gives the classic algorithm.
    """
    cfg = audio_config
    stft = STFT(cfg.filter_length, cfg.hop_length, cfg.win_length)
    # float32 from here on: twice the speed of float64 and far below Griffin-Lim's own error
    magnitude = (mel_to_magnitude(mel, cfg)[None] ** power).astype(np.float32)
    rng = rng if rng is not None else np.random.default_rng()
    angles = np.exp(2j * np.pi * rng.random(magnitude.shape)).astype(np.complex64)
    previous = np.zeros_like(angles)
    for _ in range(n_iters):
        rebuilt = stft.analyze(stft.synthesize(magnitude * angles))
        # momentum: step further along the change since the last projection
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles /= np.maximum(np.abs(angles), 1e-16)
        previous = rebuilt
    audio = stft.synthesize(magnitude * angles)[0].astype(np.float32)
    if length is not None:
        audio = np.pad(audio[:length], (0, max(0, length - audio.shape[0])))
    return audio
