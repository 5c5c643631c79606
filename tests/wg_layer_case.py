"""One WN layer's case for kernels/wg_layer.cu: its inputs and the checks of its outputs against
float64 of the same fp16 values. Shared by the GPU test (tests/gpu/test_waveglow_gpu.py,
test_layer_kernel) and a CPU test that runs the same checks on a NumPy emulation of the kernel's
arithmetic (tests/test_waveglow_fold.py), so the checks are known to be reachable by a correct
kernel before a GPU ever runs one.

The layer: acts = gate(W_taps XS + W_cond U_r cols + b), acc += W_es acts, and but for a flow's last
layer h' = h + W_res acts + b_res (h = XS's centre tap) written as the next layer's taps (dilation
2^(layer + 1)) into the other XS, zero where a tap leaves its item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tts_desktop.engine.waveglow import PackedWaveGlow, _round8
from tts_desktop.model.config import WaveGlowConfig

SEG_FRAMES = (70, 3, 129, 1, 300)  # ragged items around the 128-frame tile, 1- and 3-frame ones
BOUND = 2e-3  # relative L2 of acc and taps: the acts' fp16 and tanh.approx rounding (~4e-4) through one more product


@dataclass
class LayerCase:
    packed: PackedWaveGlow  # the layer under test set into flow 0
    layer_i: int
    n_out: int
    has_res: bool
    frames: int
    rows: int
    off: np.ndarray   # item row offsets (int32), items of whole frames
    xs: np.ndarray    # the XS the layer reads: (rows + 4 P, 3C) fp16, NaN past the rows
    cols: np.ndarray  # the mel im2col (frames + 4, ku) fp16, its bias column 1
    acc0: np.ndarray  # acc before the layer (rows + 4 P, G) float32, NaN past the rows
    wcat: np.ndarray
    gate_b: np.ndarray
    w_res: np.ndarray | None
    b_res: np.ndarray | None
    w_es: np.ndarray


def make_case(cfg: WaveGlowConfig, weights, layer_i: int, n_out: int = 6) -> LayerCase:
    packed = PackedWaveGlow.from_weights(cfg, weights, fp16=True)
    rng = np.random.default_rng(11 + layer_i)
    c, K, g, L = cfg.wn_n_channels, cfg.wn_kernel_size, cfg.n_group, cfg.wn_n_layers
    P, kt, n_mel = 256 // g, K * c, packed.n_mel
    kcond, has_res = n_mel * g, layer_i < L - 1
    wcat = np.concatenate([rng.standard_normal((2 * c, kt)) / np.sqrt(kt),
                           rng.standard_normal((2 * c, kcond)) / np.sqrt(kcond)], axis=1).astype(np.float16)
    gb = (rng.standard_normal(2 * c) * 0.5).astype(np.float32)
    w_res = (rng.standard_normal((c, c)) / 16).astype(np.float16) if has_res else None
    b_res = rng.standard_normal(c).astype(np.float32) if has_res else None
    w_es = (rng.standard_normal((n_out, c)) / 16).astype(np.float32)
    packed.flows[0]["layers"][layer_i].update(wcat=wcat, gate_b=gb, w_es=w_es, w_res=w_res, b_res=b_res)
    frames = sum(SEG_FRAMES)
    rows = frames * P
    off = (np.concatenate([[0], np.cumsum(SEG_FRAMES)]) * P).astype(np.int32)
    xs = rng.standard_normal((rows + 4 * P, _round8(kt))).astype(np.float16)
    xs[rows:] = np.nan
    cols = np.zeros((frames + 4, packed.ku), np.float16)
    cols[:, : 4 * n_mel] = rng.standard_normal((frames + 4, 4 * n_mel))
    cols[:, 4 * n_mel] = 1.0  # the upsampler's bias column, as wg_upsample_cols writes it
    acc0 = rng.standard_normal((rows + 4 * P, g)).astype(np.float32)
    acc0[rows:] = np.nan
    return LayerCase(packed, layer_i, n_out, has_res, frames, rows, off, xs, cols, acc0, wcat, gb, w_res, b_res, w_es)


def reference_acts(case: LayerCase) -> np.ndarray:
    """The layer's acts in float64 from the unfolded cond (W_cond times the upsampler's phase rows),
    rounded to fp16 as the kernel stores them."""
    cfg, pk = case.packed.config, case.packed
    c, P, kt = cfg.wn_n_channels, 256 // cfg.n_group, cfg.wn_kernel_size * cfg.wn_n_channels
    up = pk.up_w.astype(np.float64).reshape(P, pk.n_mel * cfg.n_group, pk.ku)
    cond = np.einsum("qk,rik->qri", case.cols[:case.frames].astype(np.float64), up).reshape(case.rows, -1)
    y = (case.xs[:case.rows, :kt].astype(np.float64) @ case.wcat[:, :kt].astype(np.float64).T
         + cond @ case.wcat[:, kt:].astype(np.float64).T + case.gate_b)
    return (np.tanh(y[:, :c]) / (1 + np.exp(-y[:, c:]))).astype(np.float16).astype(np.float64)


def reference_taps(case: LayerCase, h_new: np.ndarray) -> np.ndarray:
    """h_new's K taps at the next layer's dilation, per item, zero outside it: (rows, K C)."""
    cfg = case.packed.config
    K, d = cfg.wn_kernel_size, 2 ** (case.layer_i + 1)
    ref = np.zeros((case.rows, K * cfg.wn_n_channels))
    for b in range(len(case.off) - 1):
        x = h_new[case.off[b]:case.off[b + 1]]
        pad = np.pad(x, ((d, d), (0, 0)))
        ref[case.off[b]:case.off[b + 1]] = np.concatenate([pad[j * d: j * d + len(x)] for j in range(K)], axis=1)
    return ref


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def check(case: LayerCase, got_acc: np.ndarray, got_next_xs: np.ndarray | None) -> str:
    """Assert the layer's outputs (acc after it; the XS it wrote, poisoned before) and return the
    errors as a line to print."""
    cfg = case.packed.config
    c, K, rows = cfg.wn_n_channels, cfg.wn_kernel_size, case.rows
    acts = reference_acts(case)
    ref_acc = case.acc0[:rows].astype(np.float64)
    ref_acc[:, :case.n_out] += acts @ case.w_es.astype(np.float64).T
    err_acc = rel_l2(got_acc[:rows], ref_acc)
    msg = f"layer {case.layer_i}: acc {err_acc:.2e}"
    assert np.isnan(got_acc[rows:]).all(), "acc rows past the frames must not be written"
    if case.has_res:
        h = case.xs[:rows, (K // 2) * c:(K // 2 + 1) * c].astype(np.float64)
        ref = reference_taps(case, h + acts @ case.w_res.astype(np.float64).T + case.b_res)
        taps = got_next_xs[:rows, :K * c].astype(np.float64)
        assert np.isfinite(taps).all(), "every tap of every row must be written"
        assert np.isnan(got_next_xs[rows:].astype(np.float32)).all(), "rows past the frames must not be written"
        err_taps = rel_l2(taps, ref)
        msg += f", taps {err_taps:.2e}"
        assert err_taps < BOUND, msg
    assert err_acc < BOUND, msg
    return msg
