"""Mel front-end as NVIDIA's `TacotronSTFT.mel_spectrogram`: log(clamp(mel_basis @ |STFT|, 1e-5)).

Input scale: float audio in [-1, 1]. NVIDIA's data loader divides the int16 samples by
`max_wav_value` (32768) before this step, and `mel_spectrogram` asserts the range; so do we.

`mel_basis` is librosa's default filter bank (Slaney mel scale, not HTK, "slaney" area
normalisation), written out here so the app does not need librosa.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import AudioConfig
from .stft import STFT

# Slaney's mel scale: linear up to 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per 6.4x)
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, m * _F_SP)


@lru_cache(maxsize=8)
def mel_basis(sr: int = 22050, n_fft: int = 1024, n_mels: int = 80, fmin: float = 0.0,
              fmax: float | None = 8000.0) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) float32 triangular filters; read-only (it is cached and shared)."""
    fmax = sr / 2 if fmax is None else fmax
    fft_hz = np.linspace(0, sr / 2, n_fft // 2 + 1)
    # n_mels + 2 band edges equally spaced in mel: filter i rises on [e_i, e_i+1], falls on [e_i+1, e_i+2]
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz - lo) / (mid - lo)
    falling = (hi - fft_hz) / (hi - mid)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    # "slaney" normalisation: every filter has the same area (2 / bandwidth in Hz peak height)
    filters *= 2.0 / (hi - lo)
    out = filters.astype(np.float32)
    out.flags.writeable = False
    return out


def mel_spectrogram(audio: np.ndarray, audio_config: AudioConfig = AudioConfig(), n_mels: int = 80) -> np.ndarray:
    """audio (n,) or (B, n) float in [-1, 1] -> natural-log mel (n_mels, T) or (B, n_mels, T)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size and np.abs(audio).max() > 1.0:
        raise ValueError("audio must be float in [-1, 1]: divide int16 samples by max_wav_value first")
    cfg = audio_config
    stft = STFT(cfg.filter_length, cfg.hop_length, cfg.win_length)
    magnitude, _ = stft.transform(audio)
    basis = mel_basis(cfg.sampling_rate, cfg.filter_length, n_mels, cfg.mel_fmin, cfg.mel_fmax)
    mel = np.log(np.maximum(basis @ magnitude, 1e-5))
    return mel[0] if audio.ndim == 1 else mel
