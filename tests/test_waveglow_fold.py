"""The cond folding of the FP16 engine on sm_90 (kernels/wg_gemm_gate.cu, GG_FOLD), checked on the
CPU: the arrays PackedWaveGlow stores (the layer's [taps | cond] weights, the upsampler's per-phase
rows with their bias column), folded the way WaveGlowGpu._fold_cond and wg_fold_finish do on the
device (interleaved gate rows, one matrix per phase, bias column into a per-phase gate bias) and
applied the way wg_gemm_gate reads them (group step t = P q + r: phase r's weights times frame q's
im2col column), give the NumPy reference's cond_layer(group_cond(upsample(mel))) + the gate biases.
The GPU test (tests/gpu/test_waveglow_gpu.py, test_gemm_gate_fold_kernel) checks the device code.
Also kernels/wg_layer.cu's arithmetic, emulated, against the checks its GPU test makes."""

from __future__ import annotations

import numpy as np
import pytest

from tts_desktop.engine.waveglow import UPSAMPLE_KERNEL, UPSAMPLE_STRIDE, PackedWaveGlow, interleave_gate_rows
from tts_desktop.model.config import WaveGlowConfig
from tts_desktop.model.random_voice import random_voice
from tts_desktop.model.waveglow import group_cond, upsample


def im2col(mel: np.ndarray, ku: int) -> np.ndarray:
    """What kernels/waveglow.cu's wg_upsample_cols writes for one item: frame q's row is
    [mel[q], mel[q-1], mel[q-2], mel[q-3], 1, 0 pad] (zeros before the item's first frame)."""
    n_mel, frames = mel.shape
    taps = UPSAMPLE_KERNEL // UPSAMPLE_STRIDE
    cols = np.zeros((frames, ku))
    for j in range(taps):
        cols[j:, j * n_mel:(j + 1) * n_mel] = mel[:, : frames - j].T
    cols[:, taps * n_mel] = 1.0
    return cols


def fold_like_the_device(wcat: np.ndarray, up_w: np.ndarray, gate_b: np.ndarray, taps_k: int, phases: int):
    """(Wf (P, 2C, k_mel) with interleaved rows, bf (P, 2C) in channel order): _fold_cond's GEMM
    F[r] = W_cond(interleaved) U_r, then wg_fold_finish's split of F into weights and bias."""
    wc = interleave_gate_rows(np.asarray(wcat, np.float64))[:, taps_k:]
    up = np.asarray(up_w, np.float64).reshape(phases, wc.shape[1], up_w.shape[1])
    F = np.einsum("nk,rkj->rnj", wc, up)
    k_mel = (UPSAMPLE_KERNEL // UPSAMPLE_STRIDE) * (wc.shape[1] // (UPSAMPLE_STRIDE // phases))
    c2 = wc.shape[0]
    n = np.arange(c2)
    ch = (n & 1) * (c2 // 2) + n // 2  # interleaved row n -> channel (tanh 0..C-1, sigmoid C..2C-1)
    bf = np.empty((phases, c2))
    bf[:, ch] = gate_b[ch][None] + F[:, :, k_mel]
    return F[:, :, :k_mel], bf


@pytest.mark.parametrize("channels,n_group", [(32, 8), (64, 4)])
def test_folded_cond_reproduces_cond_layer_of_the_upsampled_mel(channels, n_group):
    cfg = WaveGlowConfig(n_flows=2, n_group=n_group, n_early_every=4, n_early_size=2, wn_n_layers=2,
                         wn_n_channels=channels)
    _, _, w = random_voice(waveglow=cfg, seed=3)
    packed = PackedWaveGlow.from_weights(cfg, w, fp16=False)  # float32 storage: a tight bound
    P, c, n_mel = UPSAMPLE_STRIDE // n_group, channels, packed.n_mel
    taps_k = cfg.wn_kernel_size * c
    frames = 9
    mel = np.random.default_rng(5).standard_normal((n_mel, frames)).astype(np.float32)
    cond = group_cond(upsample(mel[None], w["upsample.weight"], w["upsample.bias"]), n_group)[0]  # (n_mel G, T)
    cols = im2col(mel, packed.ku)
    t = np.arange(frames * P)
    q, r = t // P, t % P
    for k, flow in enumerate(packed.flows):
        for i, layer in enumerate(flow["layers"]):
            wf, bf = fold_like_the_device(layer["wcat"], packed.up_w, layer["gate_b"], taps_k, P)
            assert wf.shape == (P, 2 * c, 4 * n_mel)
            k_mel = wf.shape[2]
            y_int = np.einsum("tnk,tk->tn", wf[r], cols[q, :k_mel])  # interleaved rows, per step t
            y = np.empty_like(y_int)
            y[:, :c], y[:, c:] = y_int[:, 0::2], y_int[:, 1::2]
            y += bf[r]
            w_cond = np.asarray(w[f"WN.{k}.cond_layers.{i}.weight"][:, :, 0], np.float64)
            b = np.asarray(w[f"WN.{k}.cond_layers.{i}.bias"], np.float64) + np.asarray(
                w[f"WN.{k}.in_layers.{i}.bias"], np.float64)
            ref = (w_cond @ cond).T + b
            assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max(), (k, i)
            # and the check can fail: the neighbouring phase's weights give another cond
            y_wrong = np.einsum("tnk,tk->tn", wf[(r + 1) % P], cols[q, :k_mel])
            assert np.abs(y_wrong[:, 0::2] + bf[(r + 1) % P][:, :c] - ref[:, :c]).max() > 1e-3 * np.abs(ref).max()


def emulate_wg_layer(case, dilation=None):
    """kernels/wg_layer.cu's arithmetic in NumPy, the way the kernel does it: the folded weights
    rounded to fp16 once (wg_fold_finish), per phase r the rows t = P q + r from XS's taps and
    frame q's im2col row, the gate from interleaved accumulator pairs, acts stored as fp16, the skip
    share through hi/lo fp16 halves of W_end W_skip, h' = fp16(h + W_res acts + b_res), and each
    row's taps at the next dilation, zero where they leave the item. Returns (acc, next XS as the
    kernel leaves a poisoned one)."""
    from tts_desktop.engine.waveglow import skip_hi_lo

    cfg, pk = case.packed.config, case.packed
    c, K, P = cfg.wn_n_channels, cfg.wn_kernel_size, UPSAMPLE_STRIDE // cfg.n_group
    kt, rows = K * c, case.rows
    wf, bf = fold_like_the_device(case.wcat, pk.up_w, case.gate_b, kt, P)
    wf = wf.astype(np.float16).astype(np.float64)
    w_taps = interleave_gate_rows(case.wcat[:, :kt].astype(np.float64))
    y_int = case.xs[:rows, :kt].astype(np.float64) @ w_taps.T
    q = np.arange(case.frames)
    for r in range(P):
        y_int[q * P + r] += case.cols[q, :wf.shape[2]].astype(np.float64) @ wf[r].T
    y = np.concatenate([y_int[:, 0::2], y_int[:, 1::2]], axis=1) + bf[np.arange(rows) % P]
    acts = (np.tanh(y[:, :c]) / (1 + np.exp(-y[:, c:]))).astype(np.float16).astype(np.float64)
    skip = skip_hi_lo(case.w_es).astype(np.float64)
    acc = case.acc0.copy()
    acc[:rows, :case.n_out] += (acts @ skip[:8].T + acts @ skip[8:].T)[:, :case.n_out].astype(np.float32)
    nxt = np.full(case.xs.shape, np.nan, np.float16)
    if case.has_res:
        h = case.xs[:rows, (K // 2) * c:(K // 2 + 1) * c].astype(np.float64)
        h_new = (h + acts @ case.w_res.astype(np.float64).T + case.b_res).astype(np.float16)
        t = np.arange(rows)
        item = np.searchsorted(case.off, t, side="right") - 1
        d = 2 ** (case.layer_i + 1) if dilation is None else dilation
        for j in range(K):
            src = t + (j - K // 2) * d
            inside = (src >= case.off[item]) & (src < case.off[item + 1])
            nxt[:rows, j * c:(j + 1) * c] = np.where(inside[:, None], h_new[np.clip(src, 0, rows - 1)], 0)
    return acc, nxt


@pytest.mark.parametrize("layer_i", [0, 3, 7])
def test_wg_layer_arithmetic_passes_its_gpu_checks(layer_i):
    """The GPU test of wg_layer (tests/gpu/test_waveglow_gpu.py, test_layer_kernel) checks the
    kernel against float64 of the unfolded layer; here the same case and checks (tests/wg_layer_case.py)
    on the kernel's own arithmetic, emulated: the checks' bound is reachable with the fold's and the
    acts' fp16 roundings, and a wrong dilation fails them."""
    from wg_layer_case import check, make_case

    cfg = WaveGlowConfig(n_flows=8, wn_n_layers=8, wn_n_channels=128)  # the demo voice's shape
    _, _, w = random_voice(waveglow=cfg, seed=2)
    case = make_case(cfg, w, layer_i)
    acc, nxt = emulate_wg_layer(case)
    print(check(case, acc, nxt if case.has_res else None))
    if case.has_res:
        _, wrong = emulate_wg_layer(case, dilation=2 ** layer_i)
        with pytest.raises(AssertionError):
            check(case, acc, wrong)
