"""STFT and inverse STFT with the numerics of NVIDIA's `tacotron2_common/stft.py`.

NVIDIA computes the STFT as a strided Conv1d with a windowed real/imaginary DFT basis and the
inverse as a ConvTranspose with the windowed pseudo-inverse of that basis. Here the same
operations are done with real FFTs, which is the same arithmetic up to float rounding:

- forward: the basis rows are cos(2 pi k n / N) and -sin(2 pi k n / N) for k = 0..N/2, times the
  window, i.e. exactly Re and Im of rfft(window * frame).
- inverse: the pseudo-inverse of that (N+2) x N real basis is exactly irfft (worked out: its
  Gram matrix is N/2 I plus rank-one terms for the DC and Nyquist columns, and those cancel
  against the halved DC/Nyquist weights of irfft). Like irfft it ignores the imaginary part of
  the DC and Nyquist bins. NVIDIA scales the basis by N/hop before inverting and multiplies by
  N/hop afterwards; the two cancel.

Then, as NVIDIA: overlap-add the windowed frames, divide by the summed squared window wherever it
is not tiny, and drop N/2 samples at both ends (the reflect padding of the forward transform).
"""

from __future__ import annotations

import numpy as np
import scipy.fft



def periodic_window(name: str, length: int) -> np.ndarray:
    """The periodic ("fftbins") Hann window NVIDIA's STFT takes from scipy.signal.get_window.

    Written out because importing scipy.signal costs seconds at start-up, for one cosine.
    """
    if name != "hann":
        raise ValueError(f"only the Hann window is supported, not {name!r}")
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)

def _center_pad(x: np.ndarray, size: int) -> np.ndarray:
    left = (size - len(x)) // 2
    return np.pad(x, (left, size - len(x) - left))


def overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """(B, T, N) frames placed every `hop` samples and summed -> (B, (T-1)*hop + N)."""
    b, t, n = frames.shape
    n_blocks = -(-n // hop)  # each frame spans this many hop-sized blocks
    if n % hop:
        frames = np.concatenate([frames, np.zeros((b, t, n_blocks * hop - n), frames.dtype)], axis=2)
    blocks = frames.reshape(b, t, n_blocks, hop)
    out = np.zeros((b, t + n_blocks - 1, hop), dtype=frames.dtype)
    for m in range(n_blocks):  # block m of frame i lands in output block i + m
        out[:, m:m + t] += blocks[:, :, m]
    return out.reshape(b, -1)[:, : (t - 1) * hop + n]


class STFT:
    def __init__(self, filter_length: int = 1024, hop_length: int = 256, win_length: int = 1024,
                 window: str = "hann"):
        assert filter_length >= win_length
        self.filter_length = filter_length
        self.hop_length = hop_length
        self.win_length = win_length
        # periodic ("fftbins") window, zero-padded to the FFT size in the middle, as NVIDIA
        self.window = _center_pad(periodic_window(window, win_length), filter_length)
        self._window_sums: dict[int, np.ndarray] = {}  # by frame count; Griffin-Lim asks often

    def analyze(self, audio: np.ndarray) -> np.ndarray:
        """audio (B, n) -> complex spectrum (B, N/2+1, n // hop + 1); reflect-padded by N/2."""
        audio = np.atleast_2d(audio)
        dtype = np.float64 if audio.dtype == np.float64 else np.float32
        pad = self.filter_length // 2
        padded = np.pad(audio.astype(dtype, copy=False), ((0, 0), (pad, pad)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.filter_length, axis=-1)
        frames = frames[:, :: self.hop_length] * self.window.astype(dtype)
        return scipy.fft.rfft(frames, axis=-1).transpose(0, 2, 1)

    def synthesize(self, spectrum: np.ndarray) -> np.ndarray:
        """complex (B, N/2+1, T) -> audio (B, (T-1)*hop): windowed irfft, overlap-add, normalise."""
        n = self.filter_length
        frames = scipy.fft.irfft(spectrum.transpose(0, 2, 1), n=n, axis=-1)
        frames *= self.window.astype(frames.dtype)
        audio = overlap_add(frames, self.hop_length)
        win_sum = self.window_sumsquare(spectrum.shape[-1])
        nonzero = win_sum > np.finfo(np.float32).tiny
        audio[:, nonzero] /= win_sum[nonzero]
        return audio[:, n // 2: audio.shape[1] - n // 2]

    def window_sumsquare(self, n_frames: int) -> np.ndarray:
        """Sum of the squared window over all frame positions, (n_frames-1)*hop + N samples."""
        if n_frames not in self._window_sums:
            sq = np.broadcast_to(self.window**2, (1, n_frames, self.filter_length))
            self._window_sums[n_frames] = overlap_add(np.ascontiguousarray(sq), self.hop_length)[0]
        return self._window_sums[n_frames]

    def transform(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """audio (B, n) -> (magnitude, phase), each (B, N/2+1, n // hop + 1)."""
        spectrum = self.analyze(audio)
        return np.abs(spectrum), np.angle(spectrum)

    def inverse(self, magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """(magnitude, phase) (B, N/2+1, T) -> audio (B, (T-1)*hop)."""
        return self.synthesize(magnitude * np.exp(1j * phase))
