"""STFT, mel front-end, denoiser and Griffin-Lim against independent formulas (float64 DFT,
NVIDIA's pseudo-inverse basis built here, pinned librosa filter values, a bin-centred sine)."""

from __future__ import annotations

import numpy as np
import pytest

from tts_desktop.model.config import AudioConfig
from tts_desktop.model.denoiser import Denoiser
from tts_desktop.model.griffin_lim import griffin_lim, mel_to_magnitude
from tts_desktop.model.mel import mel_basis, mel_spectrogram
from tts_desktop.model.stft import STFT

SR = 22050


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A voiced, speech-shaped test signal: gliding f0, moving formants, syllable envelope, breath."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 2.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    f1 = 500 + 300 * np.sin(2 * np.pi * 3 * t)

    def formants(f):
        bump = lambda centre, width: np.exp(-0.5 * ((f - centre) / width) ** 2)  # noqa: E731
        return bump(f1, 150) + 0.5 * bump(1500, 300) + 0.2 * bump(2500, 400)

    x = sum(np.sin(h * phase) * formants(h * f0) for h in range(1, 60))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2) + 0.02 * rng.standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


# --- STFT ---------------------------------------------------------------------------------------


def test_stft_matches_direct_dft():
    """Reflect padding, periodic Hann window and phase sign, checked against a float64 DFT sum."""
    n_fft, hop = 256, 64
    x = np.random.default_rng(0).standard_normal((1, 1000))
    magnitude, phase = STFT(n_fft, hop, n_fft).transform(x)
    assert magnitude.shape == (1, n_fft // 2 + 1, 1000 // hop + 1)

    padded = np.pad(x[0], n_fft // 2, mode="reflect")
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), n) / n_fft)
    for t in (0, 7, magnitude.shape[2] - 1):
        spectrum = dft @ (window * padded[t * hop: t * hop + n_fft])
        np.testing.assert_allclose(magnitude[0, :, t], np.abs(spectrum), atol=1e-9)
        strong = np.abs(spectrum) > 1e-3
        np.testing.assert_allclose(np.exp(1j * phase[0, strong, t]), spectrum[strong] / np.abs(spectrum[strong]),
                                   atol=1e-9)


def test_inverse_matches_nvidia_pseudo_inverse_basis():
    """On a modified (inconsistent) spectrum, irfft-based inverse == NVIDIA's pinv-basis ConvTranspose."""
    n_fft, hop = 128, 32
    rng = np.random.default_rng(1)
    stft = STFT(n_fft, hop, n_fft)
    magnitude, phase = stft.transform(rng.standard_normal((1, 640)))
    magnitude = magnitude * rng.uniform(0.3, 2.0, magnitude.shape)

    # NVIDIA's construction: stacked real/imag DFT rows, pinv of (scale * basis), windowed
    fourier = np.fft.fft(np.eye(n_fft))[: n_fft // 2 + 1]
    basis = np.vstack([fourier.real, fourier.imag])
    scale = n_fft / hop
    inverse_basis = np.linalg.pinv(scale * basis).T * stft.window
    coeffs = np.concatenate([magnitude * np.cos(phase), magnitude * np.sin(phase)], axis=1)[0]
    n_frames = coeffs.shape[1]
    out = np.zeros((n_frames - 1) * hop + n_fft)
    for t in range(n_frames):  # ConvTranspose1d with stride hop
        out[t * hop: t * hop + n_fft] += inverse_basis.T @ coeffs[:, t]
    win_sum = stft.window_sumsquare(n_frames)
    out[win_sum > 1e-30] /= win_sum[win_sum > 1e-30]
    expected = (out * scale)[n_fft // 2: -(n_fft // 2)]

    np.testing.assert_allclose(stft.inverse(magnitude, phase)[0], expected, atol=1e-10)


def test_stft_round_trip():
    x = np.random.default_rng(2).uniform(-1, 1, (2, 12800)).astype(np.float32)
    stft = STFT()
    magnitude, phase = stft.transform(x)
    assert magnitude.dtype == np.float32 and magnitude.shape == (2, 513, 51)
    y = stft.inverse(magnitude, phase)
    assert y.shape == x.shape
    assert rel_err(y, x) < 1e-5

    # a length that is not a multiple of hop comes back cut to whole hops, NVIDIA's behaviour
    y = stft.inverse(*stft.transform(x[:, :1000]))
    assert y.shape == (2, 768) and rel_err(y, x[:, :768]) < 1e-5


def test_window_sum_of_squared_hann_at_quarter_hop():
    # four overlapping periodic Hann^2 windows sum to exactly 1.5 away from the ends
    win_sum = STFT().window_sumsquare(10)
    assert win_sum.shape == (9 * 256 + 1024,)
    np.testing.assert_allclose(win_sum[1024:-1024], 1.5, atol=1e-12)


# --- mel front-end ------------------------------------------------------------------------------

# librosa 0.11 `filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)`: row -> (first
# non-zero bin, its non-zero values), so the filters are checked even where librosa is absent
LIBROSA_ROWS = {
    0: (1, [0.0155277206, 0.0226513892, 0.0071236696]),
    10: (18, [0.0109648155, 0.0264925361, 0.0116865747]),
    40: (77, [0.0002958553, 0.0053154929, 0.0103351306, 0.0148954699, 0.0100649511, 0.0052344329,
              0.0004039143]),
}


def test_mel_basis_pinned_librosa_values():
    basis = mel_basis(22050, 1024, 80, 0.0, 8000.0)
    assert basis.shape == (80, 513) and basis.dtype == np.float32
    for row, (first, values) in LIBROSA_ROWS.items():
        expected = np.zeros(513)
        expected[first: first + len(values)] = values
        np.testing.assert_allclose(basis[row], expected, atol=1e-9)
    assert np.count_nonzero(basis) == 727
    np.testing.assert_allclose(basis.sum(), 3.7136884, rtol=1e-6)
    assert not basis.flags.writeable  # cached and shared


@pytest.mark.parametrize("args", [(22050, 1024, 80, 0.0, 8000.0), (16000, 512, 40, 50.0, None),
                                  (44100, 2048, 128, 20.0, 16000.0)])
def test_mel_basis_equals_librosa(args):
    librosa = pytest.importorskip("librosa", reason="librosa is a test-only comparison, not installed")
    sr, n_fft, n_mels, fmin, fmax = args
    expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(mel_basis(*args), expected, atol=1e-7 * np.abs(expected).max())


def test_mel_spectrogram_of_a_bin_centred_sine():
    """A sine on bin k: Hann leaks magnitudes A*N/8, A*N/4, A*N/8 into bins k-1, k, k+1, nothing else."""
    amplitude, k, n_fft = 0.5, 46, 1024
    t = np.arange(SR) / SR
    x = (amplitude * np.sin(2 * np.pi * k * SR / n_fft * t)).astype(np.float32)
    mel = mel_spectrogram(x, AudioConfig())
    assert mel.shape == (80, SR // 256 + 1) and mel.dtype == np.float32

    basis = mel_basis().astype(np.float64)
    expected = basis[:, k - 1: k + 2] @ (amplitude * n_fft / 8 * np.array([1.0, 2.0, 1.0]))
    expected = np.log(np.maximum(expected, 1e-5))
    np.testing.assert_allclose(mel[:, 10:-10], np.repeat(expected[:, None], mel.shape[1] - 20, axis=1), atol=2e-3)

    batch = mel_spectrogram(np.stack([x, 0.5 * x]))
    assert batch.shape == (2, 80, mel.shape[1])
    np.testing.assert_allclose(batch[0], mel, atol=1e-6)


def test_mel_spectrogram_rejects_int16_scale():
    with pytest.raises(ValueError, match="max_wav_value"):
        mel_spectrogram(np.array([0.0, 1200.0, -3000.0], np.float32), AudioConfig())


# --- denoiser -----------------------------------------------------------------------------------


class HummingVocoder:
    """Stands in for WaveGlow: whatever the mel, it 'vocodes' a steady whine on bin 300 (6460 Hz).

    A cosine, because the denoiser takes the bias from the first, reflect-padded STFT frame, and
    the mirror image of a cosine about sample 0 is the same cosine (that of a sine is not).
    """

    def infer(self, mel, sigma=0.6):
        t = np.arange(mel.shape[2] * 256) / SR
        return (0.05 * np.cos(2 * np.pi * 300 * SR / 1024 * t))[None].astype(np.float32)


def test_denoiser_strength_zero_is_the_stft_round_trip():
    x = speechlike(0.5)[None, : 40 * 256]
    assert rel_err(Denoiser(HummingVocoder())(x, strength=0.0), x) < 1e-5


def test_denoiser_removes_the_vocoder_bias():
    denoiser = Denoiser(HummingVocoder())
    assert denoiser.bias_spec.shape == (1, 513, 1)
    voice = speechlike(0.5, seed=3)[None, : 40 * 256]
    hum = HummingVocoder().infer(np.zeros((1, 80, 40)))
    cleaned = denoiser(voice + hum, strength=1.0)

    stft = STFT()
    hum_bin = lambda a: stft.transform(a)[0][0, 299:302, 4:-4].mean()  # noqa: E731  (away from the ends)
    assert hum_bin(cleaned) < 0.01 * hum_bin(voice + hum)
    # elsewhere the voice is untouched: the bias spectrum is ~0 away from the hum
    low = lambda a: a[0][0, :60]  # noqa: E731
    assert rel_err(low(stft.transform(cleaned)), low(stft.transform(voice))) < 0.01


# --- Griffin-Lim --------------------------------------------------------------------------------

# Griffin-Lim cannot recover phase exactly; a mel spectral convergence of ~0.07 is what 60
# momentum iterations reach on the speech-like signal, random phase alone gives ~0.5
GL_CONVERGENCE = 0.15


def mel_convergence(mel_a, mel_b) -> float:
    """Spectral convergence ||A - B|| / ||B|| of the linear (exp) mel magnitudes."""
    return rel_err(np.exp(mel_a), np.exp(mel_b))


def test_mel_to_magnitude_solves_the_filter_bank():
    mel = mel_spectrogram(speechlike())
    magnitude = mel_to_magnitude(mel)
    assert magnitude.shape == (513, mel.shape[1]) and magnitude.min() >= 0
    assert rel_err(mel_basis().astype(np.float64) @ magnitude, np.exp(mel)) < 0.01


def test_griffin_lim_round_trip():
    mel = mel_spectrogram(speechlike())
    audio = griffin_lim(mel, AudioConfig(), n_iters=60, rng=np.random.default_rng(0))
    assert audio.dtype == np.float32 and audio.shape == ((mel.shape[1] - 1) * 256,)
    assert mel_convergence(mel_spectrogram(np.clip(audio, -1, 1)), mel) < GL_CONVERGENCE

    # the iterations are what does it: random phase alone is far off
    no_iters = griffin_lim(mel, AudioConfig(), n_iters=0, rng=np.random.default_rng(0))
    assert mel_convergence(mel_spectrogram(np.clip(no_iters, -1, 1)), mel) > 2 * GL_CONVERGENCE

    again = griffin_lim(mel, AudioConfig(), n_iters=60, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again, audio)
    # length: WaveGlow's T*hop for T frames, the missing hop as silence
    padded = griffin_lim(mel, AudioConfig(), n_iters=60, rng=np.random.default_rng(0), length=mel.shape[1] * 256)
    assert padded.shape == (mel.shape[1] * 256,) and not padded[audio.shape[0]:].any()
    np.testing.assert_array_equal(padded[:audio.shape[0]], audio)
