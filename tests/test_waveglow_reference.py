"""The NumPy WaveGlow and denoiser against NVIDIA's own output (golden.npz), and their batch /
noise behaviour, on the small golden WaveGlow loaded through the importer."""

from __future__ import annotations

import numpy as np
import pytest

from tts_desktop.model.denoiser import Denoiser
from tts_desktop.model.importer import load_waveglow
from tts_desktop.cancel import SynthesisCancelled
from tts_desktop.model.waveglow import COND_CHUNK, WaveGlow, group_cond, upsample

GOLDEN_TOL = 1e-3  # relative L2 error against NVIDIA's PyTorch float32 output (measured ~4e-7)
BATCH_TOL = 1e-5  # batch vs alone: the same sums, blocked differently by BLAS


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def waveglow(golden_dir) -> WaveGlow:
    config, weights, _ = load_waveglow(golden_dir / "waveglow_dle.pt")
    return WaveGlow(config, weights)


def test_golden_audio(waveglow, golden):
    audio = waveglow.infer(golden["mel_postnet"], sigma=float(golden["sigma"]))
    assert audio.dtype == np.float32
    assert rel_err(audio, golden["audio"]) < GOLDEN_TOL


def test_golden_denoised(waveglow, golden):
    denoiser = Denoiser(waveglow)
    audio = waveglow.infer(golden["mel_postnet"], sigma=0.0)
    assert rel_err(denoiser(audio, strength=float(golden["strength"])), golden["denoised"]) < GOLDEN_TOL


def test_batch_of_unequal_lengths_equals_each_alone(waveglow, golden):
    long = golden["mel_postnet"][0]  # (80, 48)
    short = long[:, 5:35][:, ::-1].copy()  # other content, 30 frames
    batch = np.zeros((2, 80, 48), np.float32)
    batch[0], batch[1, :, :30] = long, short
    batch[1, :, 30:] = -4.0  # padding that would leak if it were not masked out

    out = waveglow.infer(batch, sigma=0.0, lengths=[48, 30])
    alone_long = waveglow.infer(long[None], sigma=0.0)[0]
    alone_short = waveglow.infer(short[None], sigma=0.0)[0]
    assert out.shape == (2, 48 * 256)
    assert rel_err(out[0], alone_long) < BATCH_TOL
    assert rel_err(out[1, : 30 * 256], alone_short) < BATCH_TOL
    assert not out[1, 30 * 256:].any()

    # without lengths the padding does reach the short item: the masking above is doing the work
    leaky = waveglow.infer(batch, sigma=0.0)
    assert rel_err(leaky[1, : 30 * 256], alone_short) > 1e-3


def test_noise_is_reproducible_and_matches_explicit_z(waveglow, golden):
    mel = golden["mel_postnet"]
    a = waveglow.infer(mel, sigma=0.6, rng=np.random.default_rng(7))
    b = waveglow.infer(mel, sigma=0.6, rng=np.random.default_rng(7))
    c = waveglow.infer(mel, sigma=0.6, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert rel_err(c, a) > 1e-2

    z = np.random.default_rng(7).standard_normal(waveglow.noise_shape(1, mel.shape[2]), dtype=np.float32)
    np.testing.assert_array_equal(waveglow.infer(mel, sigma=0.6, z=z), a)
    # sigma scales every noise channel, the early ones included: sigma 0 ignores z entirely
    np.testing.assert_allclose(waveglow.infer(mel, sigma=0.0, z=z), golden["audio"], atol=1e-6)


def test_noise_shape_is_checked(waveglow, golden):
    with pytest.raises(ValueError, match="z has shape"):
        waveglow.infer(golden["mel_postnet"], z=np.zeros((1, 8, 10), np.float32))


def _direct_upsample(mel, weight, bias):
    """ConvTranspose1d(stride 256) by its definition: each frame adds its weight at t*256, then
    NVIDIA's cut to T*256 samples."""
    b, _, t = mel.shape
    k = weight.shape[2]
    out = np.zeros((b, weight.shape[1], t * 256 + k), np.float64)
    for j in range(t):
        out[:, :, j * 256:j * 256 + k] += np.einsum("bi,iok->bok", mel[:, :, j], weight)
    return out[:, :, : t * 256] + bias[None, :, None]


@pytest.mark.parametrize("frames", [1, 3, 255, 256, 257, 515])
def test_conditioning_in_chunks_equals_the_whole_upsampler(waveglow, frames):
    """conditioning() upsamples COND_CHUNK frames at a time, each from the 3 frames before it:
    the same as the transposed conv over the whole sequence, across chunk edges too."""
    rng = np.random.default_rng(frames)
    mel = rng.standard_normal((2, 80, frames)).astype(np.float32)
    whole = _direct_upsample(mel, waveglow.upsample_w, waveglow.upsample_b)
    assert rel_err(upsample(mel, waveglow.upsample_w, waveglow.upsample_b), whole) < 1e-6
    assert rel_err(waveglow.conditioning(mel), group_cond(whole, waveglow.config.n_group)) < 1e-6


def test_cancel_is_checked_per_upsampler_chunk_and_per_wn_layer(waveglow):
    """A long sentence's vocoder is seconds of CPU work: Stop must not wait for all of it. The
    checks come once per COND_CHUNK frames of the upsampler and once per WN layer, and the first
    one that says stop ends the work there."""
    cfg = waveglow.config
    frames = 2 * COND_CHUNK + 10
    mel = np.random.default_rng(1).standard_normal((1, 80, frames)).astype(np.float32)
    calls = []
    waveglow.infer(mel, sigma=0.0, cancel=lambda: calls.append(1) and False)
    n_chunks = -(-frames // COND_CHUNK)
    assert len(calls) == n_chunks + cfg.n_flows * cfg.wn_n_layers

    for stop_at in (2, n_chunks + 1):     # inside the upsampler; the first WN layer
        calls.clear()
        with pytest.raises(SynthesisCancelled):
            waveglow.infer(mel, sigma=0.0, cancel=lambda: calls.append(1) or len(calls) >= stop_at)
        assert len(calls) == stop_at
