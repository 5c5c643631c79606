"""The FP16 engine's cond folding, checked on the CPU: the arrays PackedWaveGlow stores for it, put
together the way WaveGlowGpu does on the device (fold per phase, GEMM with the upsampler's im2col,
column-major output read as time-major rows), give cond_layer(group_cond(upsample(mel))) of the
NumPy reference. The GPU test (tests/gpu/test_waveglow_gpu.py) checks the device code itself."""

from __future__ import annotations

import numpy as np
import pytest

from tts_desktop.engine.waveglow import UPSAMPLE_KERNEL, UPSAMPLE_STRIDE, PackedWaveGlow
from tts_desktop.model.config import WaveGlowConfig
from tts_desktop.model.random_voice import random_voice
from tts_desktop.model.waveglow import group_cond, upsample


def im2col(mel: np.ndarray, ku: int) -> np.ndarray:
    """What kernels/waveglow.cu's wg_upsample_cols writes for one item: frame q's column is
    [mel[q], mel[q-1], mel[q-2], mel[q-3], 1, 0 pad] (zeros before the item's first frame)."""
    n_mel, frames = mel.shape
    taps = UPSAMPLE_KERNEL // UPSAMPLE_STRIDE
    cols = np.zeros((frames, ku))
    for j in range(taps):
        cols[j:, j * n_mel:(j + 1) * n_mel] = mel[:, : frames - j].T
    cols[:, taps * n_mel] = 1.0
    return cols


@pytest.mark.parametrize("channels,n_group", [(32, 8), (64, 4)])
def test_folded_cond_weights_reproduce_cond_layer_of_the_upsampled_mel(channels, n_group):
    cfg = WaveGlowConfig(n_flows=2, n_group=n_group, n_early_every=4, n_early_size=2, wn_n_layers=2,
                         wn_n_channels=channels)
    _, _, w = random_voice(waveglow=cfg, seed=3)
    packed = PackedWaveGlow.from_weights(cfg, w, fp16=True)
    assert packed.fold_cond and packed.up_w.dtype == np.float32
    P, c2, n_mel = UPSAMPLE_STRIDE // n_group, 2 * channels, packed.n_mel
    frames = 9
    mel = np.random.default_rng(5).standard_normal((n_mel, frames)).astype(np.float32)
    cond = group_cond(upsample(mel[None], w["upsample.weight"], w["upsample.bias"]), n_group)[0]  # (n_mel G, T)
    cols = im2col(mel, packed.ku)
    up = packed.up_w.astype(np.float64).reshape(P, n_mel * n_group, packed.ku)
    for k, flow in enumerate(packed.flows):
        for i, layer in enumerate(flow["layers"]):
            w_cond = np.asarray(w[f"WN.{k}.cond_layers.{i}.weight"][:, :, 0], np.float64)
            assert layer["wcat"].shape == (c2, cfg.wn_kernel_size * channels)  # the taps only
            a = np.concatenate([layer["w_cond"] @ up[p] for p in range(P)])  # (P * 2C, KU), as on the device
            y = (a @ cols.T).T.reshape(frames * P, c2)  # column-major (P*2C) x frames = time-major rows
            ref = (w_cond @ cond).T
            assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_fp32_packs_unfolded_unless_asked():
    cfg = WaveGlowConfig(n_flows=2, n_group=8, wn_n_layers=2, wn_n_channels=32)
    _, _, w = random_voice(waveglow=cfg, seed=1)
    plain = PackedWaveGlow.from_weights(cfg, w, fp16=False)
    assert not plain.fold_cond and "w_cond" not in plain.flows[0]["layers"][0]
    assert plain.flows[0]["layers"][0]["wcat"].shape == (64, 3 * 32 + 80 * 8)
    folded = PackedWaveGlow.from_weights(cfg, w, fp16=False, fold_cond=True)
    assert folded.fold_cond and folded.flows[0]["layers"][0]["w_cond"].shape == (64, 80 * 8)
    unfolded16 = PackedWaveGlow.from_weights(cfg, w, fp16=True, fold_cond=False)
    assert unfolded16.up_w.dtype == np.float16 and "w_cond" not in unfolded16.flows[0]["layers"][0]
