"""WaveGlow and denoiser on the GPU against the NumPy references (tts_desktop.model.*) and NVIDIA's
golden outputs. Every kernel gets fresh random inputs and NaN-poisoned outputs.

FP16 bounds: the FP16 engine rounds every GEMM operand to 11 significant bits (relative step 2^-11
~ 5e-4) and accumulates in FP32; 96 WN layers feed 12 affine couplings whose exp(-log_s) and
inverse 1x1 convs amplify what reaches the audio. Measured on the H100 (docs/gpu-notes.md):
golden small model 1.2e-4, full 256-channel model 4.3e-4 .. 5.5e-4 relative L2; the 5e-3 bound
leaves about 10x margin, small enough that a wrong index or a dropped term (errors of order 1) fails.

TF32 bounds (the FP32 engine built with tf32=True: the upsample, in/cond and res GEMMs as
cublasGemmEx with COMPUTE_32F_FAST_TF32; storage and every kernel stay float32). TF32 keeps FP16's
10-bit mantissa (FP32's exponent) for the GEMM operands and accumulates in FP32, so FP16's bounds
apply. Emulated on the CPU before any GPU run (tests/gpu/emulate_tf32.py: the NumPy reference
with exactly those GEMMs' operands rounded to TF32): full model 4.8e-4 .. 6.7e-4 relative L2 with
round-to-nearest, 1.3e-3 .. 1.9e-3 if the tensor cores truncate the 13 low bits (cuBLAS does not
say which it does); golden small 0.95e-4 / 1.8e-4; the cond columns (one GEMM, K = 321)
3.0e-4 / 7.4e-4. Bounds: 5e-3 (2e-3 for the cond columns, as FP16), >= 2.6x the worst
emulated case and still far below what a wrong index, a dropped term (O(1)) or a lost FP32
accumulation (~1e-2) gives. Strict FP32 stays at 1e-4. A TF32 error below 1e-5 fails too (strict
FP32 measures 7e-7 .. 8e-7): that would mean cuBLAS never ran TF32, i.e. the option does nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu_common import gpu_or_skip, golden_small, ragged_lengths, random_waveglow_weights, rel_l2
from wg_layer_case import check, make_case

pytestmark = pytest.mark.gpu
gpu_or_skip()

from tts_desktop.engine.denoiser import DenoiserGpu  # noqa: E402
from tts_desktop.engine.runtime import GpuContext  # noqa: E402
from tts_desktop.engine.stage_util import launch  # noqa: E402
from tts_desktop.engine.waveglow import (PackedWaveGlow, WaveGlowGpu, _round8, gemm_gate_supported,  # noqa: E402
                                         interleave_gate_rows, noise_channel_order, pack_fused_b)
from tts_desktop.model.config import WaveGlowConfig  # noqa: E402
from tts_desktop.model.denoiser import Denoiser  # noqa: E402
from tts_desktop.model.waveglow import WaveGlow, group_cond, upsample  # noqa: E402

FP32_TOL = 1e-4
FP16_TOL = 5e-3
TF32_TOL = 5e-3      # the FP32 engine with TF32 GEMMs (module doc)
TF32_VISIBLE = 1e-5  # a TF32 error at least this large: the GEMMs did run in TF32


@pytest.fixture(scope="module")
def ctx():
    return GpuContext()


@pytest.fixture(scope="module")
def full():
    """NVIDIA's published shape (256 channels, 12 flows, 8 layers) with random weights."""
    cfg = WaveGlowConfig()
    w = random_waveglow_weights(cfg, np.random.default_rng(1))
    return cfg, w, WaveGlow(cfg, w)


@pytest.fixture(scope="module")
def demo():
    """The bundled demo voice's shape (128 channels, 8 flows, 8 layers) with random weights."""
    cfg = WaveGlowConfig(n_flows=8, wn_n_layers=8, wn_n_channels=128)
    w = random_waveglow_weights(cfg, np.random.default_rng(2))
    return cfg, w, WaveGlow(cfg, w)


def _padded_mel(rng, lengths, n_mel=80):
    mel = rng.standard_normal((len(lengths), n_mel, max(lengths))).astype(np.float32)
    for b, n in enumerate(lengths):
        mel[b, :, n:] = rng.standard_normal((n_mel, max(lengths) - n))  # junk the engine must ignore
    return mel


# ------------------------------------------------------------------------------------- kernels


def _philox_normals(n: int, seed: int, sigma: float) -> np.ndarray:
    """NumPy Philox4x32-10 + Box-Muller, as wg_noise computes it (uint64 arithmetic, float64 math)."""
    q = np.arange((n + 3) // 4, dtype=np.uint64)
    M = 0xFFFFFFFF
    c = [q & M, q >> np.uint64(32), np.zeros_like(q), np.zeros_like(q)]
    k0, k1 = np.uint64(seed & M), np.uint64((seed >> 32) & M)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & M, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & M]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & M, (k1 + np.uint64(0xBB67AE85)) & M
    u = [((x >> np.uint64(8)).astype(np.float64) + 0.5) / 2**24 for x in c]
    z = []
    for p in range(2):
        r = np.sqrt(-2 * np.log(u[2 * p]))
        z += [r * np.cos(2 * np.pi * u[2 * p + 1]), r * np.sin(2 * np.pi * u[2 * p + 1])]
    return (sigma * np.stack(z, axis=1).reshape(-1)[:n]).astype(np.float32)


def test_noise_kernel_matches_numpy_philox(ctx, full):
    cfg, w, _ = full
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=False))
    n, seed, sigma = 10_003, 0x1234_5678_9ABC, 0.7
    out = ctx.empty(n, np.float32)
    out.poison()
    launch(ctx, wg.k_noise, (n + 1023) // 1024, 256, out, np.int64(n), np.uint32(seed & 0xFFFFFFFF),
               np.uint32(seed >> 32), sigma)
    got, ref = out.to_host(), _philox_normals(n, seed, sigma)
    assert rel_l2(got, ref) < 1e-5
    assert abs(got.std() / sigma - 1) < 0.05 and abs(got.mean()) < 0.05


# engine -> (fp16, tf32, seed, bound): the TF32 engine runs the upsample as one strided-batched GEMM
# (gemm_strided_batched_ex) with TF32 compute, so it gets FP16's bound
COND_CASES = {"fp32": (False, False, 2, FP32_TOL), "fp16": (True, False, 2, 2e-3), "tf32": (False, True, 12, 2e-3)}


@pytest.mark.parametrize("engine", list(COND_CASES))
def test_cond_columns_match_reference_upsample(ctx, full, engine):
    """wg_upsample_cols + the strided-batched GEMM write exactly group_cond(upsample(mel))."""
    fp16, tf32, seed, bound = COND_CASES[engine]
    cfg, w, _ = full
    rng = np.random.default_rng(seed)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=fp16), tf32=tf32)
    if tf32:
        assert wg.tf32 and not wg.fused
    lengths = [5, 2, 7]
    mel = _padded_mel(rng, lengths)
    spf = 256 // cfg.n_group
    buf = wg._buffers(sum(lengths) * spf, sum(lengths))
    buf.xs.poison()
    wg.infer(ctx.to_device(mel), lengths, sigma=0.0)
    kc = cfg.wn_kernel_size * cfg.wn_n_channels
    xs = buf.xs.to_host()[:, kc: kc + 640]
    row = 0
    for b, n in enumerate(lengths):
        ref = group_cond(upsample(mel[b:b + 1, :, :n], w["upsample.weight"], w["upsample.bias"]), cfg.n_group)
        got = xs[row: row + n * spf].astype(np.float32).T[None]
        assert rel_l2(got, ref) < bound
        row += n * spf


@pytest.mark.parametrize("fp16", [False, True])
def test_gate_kernel(ctx, full, fp16):
    cfg, w, _ = full
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=fp16))
    rng = np.random.default_rng(3)
    c, g, rows, n_out = cfg.wn_n_channels, cfg.n_group, 1000, 6
    act = np.float16 if fp16 else np.float32
    y = (rng.standard_normal((rows, 2 * c)) * 2).astype(act)
    gb = rng.standard_normal(2 * c).astype(np.float32)
    wes = rng.standard_normal((n_out, c)).astype(np.float32) / 16
    acc0 = rng.standard_normal((rows, g)).astype(np.float32)
    a_dev = ctx.empty((rows, c), act)
    a_dev.poison()
    acc = ctx.to_device(acc0)
    launch(ctx, wg.k_gate, (rows + 7) // 8, 256, rows, ctx.to_device(y), ctx.to_device(gb), a_dev,
               ctx.to_device(wes), n_out, acc)
    yf = y.astype(np.float64) + gb
    acts = np.tanh(yf[:, :c]) / (1 + np.exp(-yf[:, c:]))
    ref_acc = acc0.astype(np.float64)
    ref_acc[:, :n_out] += acts @ wes.T
    tol = 2e-3 if fp16 else 1e-6  # FP16: SFU tanh and rounded stored acts; the dot uses the float value
    assert rel_l2(a_dev.to_host(), acts) < tol
    assert rel_l2(acc.to_host(), ref_acc) < (1e-3 if fp16 else 1e-6)


@pytest.mark.parametrize("fp16", [False, True])
def test_residual_kernel_writes_every_tap(ctx, full, fp16):
    cfg, w, _ = full
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=fp16))
    rng = np.random.default_rng(4)
    c, K = cfg.wn_n_channels, cfg.wn_kernel_size
    act = np.float16 if fp16 else np.float32
    seg = [70, 3, 200, 1]
    off = np.concatenate([[0], np.cumsum(seg)]).astype(np.int32)
    rows, ld, d = int(off[-1]), K * c + 8, 64
    r = rng.standard_normal((rows, c)).astype(act)
    br = rng.standard_normal(c).astype(np.float32)
    h0 = rng.standard_normal((rows, c)).astype(np.float32)
    h = ctx.to_device(h0)
    xs = ctx.empty((rows, ld), act)
    xs.poison()
    launch(ctx, wg.k_res, (rows * c // wg.vec + 255) // 256, 256, rows, ctx.to_device(off), len(seg),
               ctx.to_device(r), ctx.to_device(br), h, xs, ld, K, d)
    hn = h0 + r.astype(np.float32) + br
    assert rel_l2(h.to_host(), hn) < 1e-6
    ref = np.zeros((rows, K * c), np.float32)
    for b in range(len(seg)):
        x = hn[off[b]:off[b + 1]]
        pad = np.pad(x, ((d, d), (0, 0)))
        n = len(x)
        ref[off[b]:off[b + 1]] = np.concatenate([pad[j * d: j * d + n] for j in range(K)], axis=1)
    got = xs.to_host()[:, : K * c].astype(np.float32)
    assert rel_l2(got, ref.astype(act)) < 1e-6


def _gemm_gate_or_skip(ctx, cfg):
    if not gemm_gate_supported(cfg, ctx.cc, ctx.max_shared_per_block):
        pytest.skip(f"wg_gemm_gate runs on sm_90 only (this GPU: {ctx.arch})")


@pytest.mark.parametrize("cluster", [1, 2])
@pytest.mark.parametrize("net", ["full", "demo"])
@pytest.mark.parametrize("rows", [1, 127, 128, 129, 1000, 18601])
def test_gemm_gate_kernel(ctx, request, net, rows, cluster):
    """wg_gemm_gate (sm_90a): acts = tanh(W XS + b)[:C] * sigmoid(W XS + b)[C:] on random XS, weights
    and biases, row counts around the 128-row tile and a batch-1 size; XS rows past `rows` hold NaN
    (they must not reach a stored act), and acts rows past `rows` must stay as poisoned.
    FP16 bound: XS and W are fp16 and exact in the FP32 accumulation, so the error is the acts'
    fp16 rounding (2^-11 relative) plus tanh.approx's (~2^-11): ~4e-4 relative L2 expected, 2e-3
    allowed; a wrong tile, channel pairing or K step gives errors of order 1. cluster 2: blocks in
    pairs sharing the weight tile (multicast)."""
    cfg, w, _ = request.getfixturevalue(net)
    _gemm_gate_or_skip(ctx, cfg)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), gemm_gate=True,
                     gemm_gate_cluster=cluster, fold_cond=False)
    rng = np.random.default_rng(rows)
    c, K = cfg.wn_n_channels, cfg.wn_kernel_size
    kc = K * c + 80 * cfg.n_group
    buf = wg._buffers(rows + 300, 4)
    xs = rng.standard_normal((buf.rows, buf.ld)).astype(np.float16)
    xs[rows:] = np.nan
    wcat = (rng.standard_normal((2 * c, kc)) / np.sqrt(kc) * 2).astype(np.float16)
    gb = (rng.standard_normal(2 * c) * 0.5).astype(np.float32)
    layer = {"wcat": ctx.to_device(interleave_gate_rows(wcat)), "gate_b": ctx.to_device(gb)}
    buf.xs.copy_from(xs)
    buf.y.poison()
    wg._layer_gemm_gate(buf, rows, kc, layer)
    y = xs[:rows, :kc].astype(np.float64) @ wcat.astype(np.float64).T + gb
    ref = np.tanh(y[:, :c]) / (1 + np.exp(-y[:, c:]))
    got = buf.y.to_host()
    err = rel_l2(got[:rows], ref)
    print(f"wg_gemm_gate {net} rows {rows} cluster {cluster}: {err:.2e}")
    assert err < 2e-3
    assert np.isnan(got[rows:].astype(np.float32)).all(), "rows past n_rows must not be written"


@pytest.mark.parametrize("net", ["full", "demo"])
@pytest.mark.parametrize("frames", [1, 4, 5, 127, 128, 129, 580])
def test_gemm_gate_fold_kernel(ctx, request, net, frames):
    """wg_gemm_gate with the cond folded (GG_FOLD): the layer's acts from XS's taps and the mel's
    im2col through the per-phase folded weights, which WaveGlowGpu makes on the device from the
    packed (fp16) cond_layer and upsampler weights, against the unfolded product in float64 of the
    same fp16 values: y[P q + r] = W_taps XS[P q + r] + W_cond (U_r cols[q]) + gate_b. Random XS,
    im2col and weights; frame counts around the 128-frame tile and a batch-1 size; acts rows past
    frames * P must stay as poisoned, and XS rows past them hold NaN that must not reach a stored act.
    FP16 bound as test_gemm_gate_kernel's, 2e-3 (expected ~4e-4: the acts' rounding, tanh.approx's,
    and the folded weights' one fp16 rounding); a wrong phase, frame or K segment gives errors of
    order 1."""
    cfg, w, _ = request.getfixturevalue(net)
    _gemm_gate_or_skip(ctx, cfg)
    packed = PackedWaveGlow.from_weights(cfg, w, fp16=True)
    rng = np.random.default_rng(frames)
    c, K, g = cfg.wn_n_channels, cfg.wn_kernel_size, cfg.n_group
    P, kt, n_mel = 256 // g, K * c, packed.n_mel
    kcond = n_mel * g
    # the layer under test: random taps and cond weights (cond rows scaled so that both parts count)
    wcat = np.concatenate([rng.standard_normal((2 * c, kt)) / np.sqrt(kt),
                           rng.standard_normal((2 * c, kcond)) / np.sqrt(kcond)], axis=1).astype(np.float16)
    gb = (rng.standard_normal(2 * c) * 0.5).astype(np.float32)
    packed.flows[0]["layers"][0].update(wcat=wcat, gate_b=gb)
    wg = WaveGlowGpu(ctx, packed, gemm_gate=True, fold_cond=True)
    layer = wg.flows[0]["layers"][0]
    rows = frames * P
    buf = wg._buffers(rows + 4 * P, frames + 4)
    assert buf.ld == _round8(kt)
    xs = rng.standard_normal((buf.rows, buf.ld)).astype(np.float16)
    xs[rows:] = np.nan
    cols = np.zeros((buf.frames, packed.ku), np.float16)
    cols[:, : 4 * n_mel] = rng.standard_normal((buf.frames, 4 * n_mel))
    cols[:, 4 * n_mel] = 1.0  # the upsampler's bias column, as wg_upsample_cols writes it
    buf.xs.copy_from(xs)
    buf.cols.copy_from(cols)
    buf.y.poison()
    wg._layer_gemm_gate(buf, rows, kt, layer)
    up = packed.up_w.astype(np.float64).reshape(P, kcond, packed.ku)
    cond = np.einsum("qk,rik->qri", cols[:frames].astype(np.float64), up).reshape(rows, kcond)  # row P q + r
    y = xs[:rows, :kt].astype(np.float64) @ wcat[:, :kt].astype(np.float64).T + cond @ wcat[:, kt:].astype(
        np.float64).T + gb
    ref = np.tanh(y[:, :c]) / (1 + np.exp(-y[:, c:]))
    got = buf.y.to_host()
    err = rel_l2(got[:rows], ref)
    print(f"wg_gemm_gate folded {net} frames {frames}: {err:.2e}")
    assert err < 2e-3
    assert np.isnan(got[rows:].astype(np.float32)).all(), "rows past the frames must not be written"


@pytest.mark.parametrize("net", ["full", "demo"])
@pytest.mark.parametrize("layer_i", [0, 3, 7])
def test_layer_kernel(ctx, request, net, layer_i):
    """wg_layer (sm_90a): one whole WN layer from the folded GEMM to the next layer's taps, on the
    case of tests/wg_layer_case.py: ragged items (frame counts around the 128-frame tile), XS rows
    past the frames NaN (must reach nothing stored), acc and the next XS poisoned (every tap of
    every row written; nothing past the rows); acc and taps against float64 of the same fp16
    values, 2e-3 (a wrong row, phase or swizzle gives errors of order 1). Layer 3 reads XS2 and
    writes XS; layer 7, the flow's last, has no res and writes no taps. tests/test_waveglow_fold.py
    runs the same checks on a NumPy emulation of the kernel's arithmetic."""
    cfg, w, _ = request.getfixturevalue(net)
    _gemm_gate_or_skip(ctx, cfg)
    case = make_case(cfg, w, layer_i)
    wg = WaveGlowGpu(ctx, case.packed, gemm_gate=True, fold_cond=True, layer_kernel=True)
    layer = wg.flows[0]["layers"][layer_i]
    P = 256 // cfg.n_group
    buf = wg._buffers(case.rows + 4 * P, case.frames + 4)
    assert (buf.rows, buf.ld) == case.xs.shape and buf.frames == len(case.cols)
    src, dst = (buf.xs, buf.xs2) if layer_i % 2 == 0 else (buf.xs2, buf.xs)
    src.copy_from(case.xs)
    dst.poison()
    buf.cols.copy_from(case.cols)
    acc = ctx.to_device(case.acc0)
    wg._row_off = ctx.to_device(case.off)
    wg._layer_whole(buf, case.rows, len(case.off) - 1, cfg.wn_kernel_size * cfg.wn_n_channels, layer, case.n_out,
                    acc, layer_i)
    print(f"wg_layer {net} " + check(case, acc.to_host(), dst.to_host() if case.has_res else None))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("net", ["full", "demo"])
@pytest.mark.parametrize("h_half,has_res,grid,acts_in", [(False, True, 5, False), (True, True, 7, False),
                                                         (True, False, 3, False), (False, True, 132, False),
                                                         (True, True, 7, True), (True, False, 3, True),
                                                         (False, True, 132, True)])
def test_fused_layer_kernel(ctx, request, net, h_half, has_res, grid, groups, acts_in):
    """wg_layer_fused (FP16 engine): gate -> res GEMM -> h += res + b, taps into XS, skip share into
    acc, ragged items, a row count that is no multiple of the tile, few blocks (grid-stride and the
    next-tile prefetch) and many; at 256 channels (NVIDIA's) and 128 (the demo voice's); one group of
    16 warps per block (32-row tiles) or two independent groups of 8 (16-row tiles each). acts_in:
    its input is the gated acts (wg_gemm_gate's output) instead of Y."""
    cfg, w, _ = request.getfixturevalue(net)
    if acts_in:
        _gemm_gate_or_skip(ctx, cfg)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), fused=True, h_half=h_half,
                     fused_groups=groups, gemm_gate=acts_in, fold_cond=False)
    assert wg.fused_groups == groups and wg.fused_rows == 32 // groups
    rng = np.random.default_rng(6)
    c, g, K, d, n_out = cfg.wn_n_channels, cfg.n_group, cfg.wn_kernel_size, 16, 6
    seg = [70, 3, 200, 1, 727]
    off = np.concatenate([[0], np.cumsum(seg)]).astype(np.int32)
    rows = int(off[-1])
    y = (rng.standard_normal((rows, 2 * c)) * 2).astype(np.float16)
    gb = rng.standard_normal(2 * c).astype(np.float32)
    w_res = (rng.standard_normal((c, c)) / 16).astype(np.float16)
    b_res = rng.standard_normal(c).astype(np.float32)
    wes = rng.standard_normal((n_out, c)) / 16
    h0 = rng.standard_normal((rows, c)).astype(np.float32)
    acc0 = rng.standard_normal((rows, g)).astype(np.float32)
    layer = {"gate_b": ctx.to_device(gb), "b_res": ctx.to_device(b_res),
             "w_frag": ctx.to_device(pack_fused_b(w_res if has_res else None, wes))}
    buf = wg._buffers(rows, 4)
    yf = y.astype(np.float64) + gb
    acts = np.tanh(yf[:, :c]) / (1 + np.exp(-yf[:, c:]))
    if acts_in:
        # the kernel's input is then fp16 acts: the reference takes exactly those values
        acts = acts.astype(np.float16).astype(np.float64)
        y_in = acts.astype(np.float16)
    else:
        y_in = y
    buf.y.copy_from(np.ascontiguousarray(np.concatenate([y_in, np.zeros((buf.rows - rows, y_in.shape[1]),
                                                                        np.float16)])))
    xs0 = np.full((buf.rows, buf.ld), np.nan, np.float16)
    xs0[:rows, (K // 2) * c:(K // 2 + 1) * c] = h0  # h_half: the residual stream is the centre tap
    buf.xs.copy_from(xs0)
    buf.h.copy_from(np.concatenate([h0, np.zeros((buf.rows - rows, c), np.float32)]))
    acc = ctx.to_device(acc0)
    # launch with an explicit grid (fused_layer uses min(tiles, SMs))
    launch(ctx, wg.k_fused, grid, 512, rows, ctx.to_device(off), len(seg), buf.y, layer["gate_b"], layer["w_frag"],
           layer["b_res"], int(has_res), n_out, acc, np.uint64(0) if h_half else buf.h, buf.xs, buf.ld, K, d,
           shmem=wg.fused_smem)
    ref_acc = acc0.astype(np.float64)
    ref_acc[:, :n_out] += acts @ wes.T
    assert rel_l2(acc.to_host(), ref_acc) < 1e-3
    if not has_res:
        return
    hb = (h0.astype(np.float16) if h_half else h0).astype(np.float64)
    hn = hb + acts.astype(np.float16).astype(np.float64) @ w_res.astype(np.float64).T + b_res
    if not h_half:
        assert rel_l2(buf.h.to_host()[:rows], hn) < 1e-3
    ref = np.zeros((rows, K * c))
    for b in range(len(seg)):
        x = hn[off[b]:off[b + 1]]
        pad = np.pad(x, ((d, d), (0, 0)))
        ref[off[b]:off[b + 1]] = np.concatenate([pad[j * d: j * d + len(x)] for j in range(K)], axis=1)
    got = buf.xs.to_host()[:rows, : K * c].astype(np.float64)
    assert np.isfinite(got).all(), "every tap of every row must be written"
    assert rel_l2(got, ref) < 1e-3


# ------------------------------------------------------------------------------------- stage


def test_golden_small_waveglow_sigma0(ctx):
    golden, w, cfg_d, _, _ = golden_small()
    cfg = WaveGlowConfig.from_dict(cfg_d)
    mel = golden["mel_postnet"].astype(np.float32)
    errs = {}
    for fp16 in (False, True):
        wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=fp16))
        out = wg.infer(ctx.to_device(mel), [mel.shape[2]], sigma=0.0)
        errs[fp16] = rel_l2(out.to_host(), golden["audio"])
    print(f"golden small WaveGlow: fp32 {errs[False]:.2e} fp16 {errs[True]:.2e}")
    assert errs[False] < FP32_TOL
    assert errs[True] < FP16_TOL


def _ragged_case(full, batch):
    """The full model's ragged test case for `batch` items: (cfg, weights, lengths, mel, z, sigma,
    the reference's audio), the same inputs for every engine compared on it."""
    cfg, w, ref_model = full
    rng = np.random.default_rng(100 + batch)
    hi = {1: 12, 2: 9, 3: 7, 8: 5, 32: 3}[batch]
    lengths = ragged_lengths(rng, batch, 1, hi)
    mel = _padded_mel(rng, lengths)
    z = rng.standard_normal(ref_model.noise_shape(batch, max(lengths))).astype(np.float32)
    sigma = 0.6
    return cfg, w, lengths, mel, z, sigma, ref_model.infer(mel, sigma=sigma, z=z, lengths=lengths)


@pytest.mark.parametrize("batch", [1, 2, 3, 8, 32])
def test_full_waveglow_ragged_given_z(ctx, full, batch):
    cfg, w, lengths, mel, z, sigma, ref = _ragged_case(full, batch)
    errs = {}
    # FP32; FP16 as run by default (the layer GEMM: on sm_90 wg_gemm_gate with the cond folded, else
    # cuBLAS's; then the fused layer in two groups of warps, h kept fp16); FP16 fused with h float32;
    # FP16 fused in one group of 16 warps; on sm_90 also cuBLAS's GEMM ("cublas") and wg_gemm_gate
    # unfolded, alone ("gg") and in clusters of two ("gg2")
    cases = [(False, False, {}), (True, True, {}), ("h32", True, dict(h_half=False)),
             ("g1", True, dict(fused_groups=1))]
    if gemm_gate_supported(cfg, ctx.cc, ctx.max_shared_per_block):
        cases += [("cublas", True, dict(gemm_gate=False)), ("gg", True, dict(gemm_gate=True, fold_cond=False)),
                  ("gg2", True, dict(gemm_gate=True, gemm_gate_cluster=2))]
    for key, fp16, kw in cases:
        wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=fp16), **kw)
        out = ctx.empty(ref.shape, np.float32)
        out.poison()
        got = wg.infer(ctx.to_device(mel), lengths, sigma=sigma, noise=wg.set_noise_from_z(z, lengths, sigma),
                       out=out).to_host()
        errs[key] = rel_l2(got, ref)
        for b, n in enumerate(lengths):
            assert not got[b, n * 256:].any(), "samples past an item's length must be zero"
    print(f"full WaveGlow B={batch} lengths={lengths}: fp32 {errs[False]:.2e} fp16 {errs[True]:.2e} "
          f"fp16 (wg_gemm_gate) {errs.get('gg', float('nan')):.2e} (clusters) {errs.get('gg2', float('nan')):.2e} "
          f"fp16 (cuBLAS GEMM) {errs.get('cublas', float('nan')):.2e} "
          f"fp16 (h fp32) {errs['h32']:.2e} fp16 (1 group) {errs['g1']:.2e}")
    assert errs[False] < FP32_TOL
    assert errs[True] < FP16_TOL
    assert errs.get("gg", 0.0) < FP16_TOL
    assert errs.get("gg2", 0.0) < FP16_TOL
    assert errs.get("cublas", 0.0) < FP16_TOL
    assert errs["h32"] < FP16_TOL
    assert errs["g1"] < FP16_TOL


# wg_layer (written without a GPU in session 11): its tests all carry "layer_kernel" in their names,
# so that a suite run can leave them out (-k "not layer_kernel") until they have passed once: a trap
# from its watchdog would leave the CUDA context unusable for the tests after it.
@pytest.mark.parametrize("net", ["full", "demo"])
@pytest.mark.parametrize("batch", [1, 3, 32])
def test_full_waveglow_ragged_layer_kernel(ctx, request, net, batch):
    """The whole WaveGlow with each WN layer as one wg_layer kernel, against the NumPy reference
    (FP16 bound as the default path's) and against the default two-kernel path (the same fp16
    rounding points, so much closer; printed), ragged, outputs poisoned."""
    cfg, w, ref_model = request.getfixturevalue(net)
    _gemm_gate_or_skip(ctx, cfg)
    _, _, lengths, mel, z, sigma, ref = _ragged_case((cfg, w, ref_model), batch)
    outs = {}
    for key, kw in (("two kernels", {}), ("wg_layer", dict(layer_kernel=True))):
        wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), **kw)
        out = ctx.empty(ref.shape, np.float32)
        out.poison()
        outs[key] = wg.infer(ctx.to_device(mel), lengths, sigma=sigma, noise=wg.set_noise_from_z(z, lengths, sigma),
                             out=out).to_host()
        for b, n in enumerate(lengths):
            assert not outs[key][b, n * 256:].any(), "samples past an item's length must be zero"
    err, err_pair = rel_l2(outs["wg_layer"], ref), rel_l2(outs["wg_layer"], outs["two kernels"])
    print(f"wg_layer {net} B={batch}: vs reference {err:.2e}, vs the two-kernel path {err_pair:.2e}")
    assert err < FP16_TOL


def test_layer_kernel_is_reproducible(ctx, full):
    cfg, w, _ = full
    _gemm_gate_or_skip(ctx, cfg)
    lengths = [6, 3]
    mel = ctx.to_device(_padded_mel(np.random.default_rng(7), lengths))
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), layer_kernel=True)
    a = wg.infer(mel, lengths, sigma=0.6, seed=3).to_host()
    b = wg.infer(mel, lengths, sigma=0.6, seed=3).to_host()
    assert np.array_equal(a, b)


def test_device_noise_is_deterministic_and_sigma0_is_mean(ctx, full):
    cfg, w, ref_model = full
    rng = np.random.default_rng(5)
    lengths = [4, 6]
    mel = _padded_mel(rng, lengths)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=False))
    d_mel = ctx.to_device(mel)
    a = wg.infer(d_mel, lengths, sigma=0.8, seed=7).to_host()
    b = wg.infer(d_mel, lengths, sigma=0.8, seed=7).to_host()
    c = wg.infer(d_mel, lengths, sigma=0.8, seed=8).to_host()
    assert np.array_equal(a, b)
    assert rel_l2(c, a) > 0.1
    z0 = wg.infer(d_mel, lengths, sigma=0.0, seed=9).to_host()
    assert rel_l2(z0, ref_model.infer(mel, sigma=0.0, lengths=lengths)) < FP32_TOL


@pytest.mark.parametrize("h_half,groups,gemm_gate", [(True, 1, False), (False, 1, False), (True, 2, False),
                                                     (True, 2, True), (True, 2, "fold")])
def test_fp16_fused_is_reproducible(ctx, full, h_half, groups, gemm_gate):
    """Same input, same bits (the fused kernel reduces its skip partials in a fixed order; each of
    wg_gemm_gate's accumulators sums its K steps in one order)."""
    cfg, w, _ = full
    rng = np.random.default_rng(7)
    lengths = [6, 3]
    mel = ctx.to_device(_padded_mel(rng, lengths))
    if gemm_gate:
        _gemm_gate_or_skip(ctx, cfg)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), h_half=h_half, fused_groups=groups,
                     gemm_gate=bool(gemm_gate), fold_cond=gemm_gate == "fold")
    assert wg.fused
    a = wg.infer(mel, lengths, sigma=0.6, seed=3).to_host()
    b = wg.infer(mel, lengths, sigma=0.6, seed=3).to_host()
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------- TF32


def _tf32_visible(err: float) -> bool:
    """False only when TF32 cannot be seen in the error: NVIDIA_TF32_OVERRIDE=0 makes cuBLAS ignore
    COMPUTE_32F_FAST_TF32 (then the engine is strict, which is fine, and nothing is asserted)."""
    import os

    return err > TF32_VISIBLE or os.environ.get("NVIDIA_TF32_OVERRIDE") == "0"


def test_tf32_golden_small_waveglow_sigma0(ctx):
    golden, w, cfg_d, _, _ = golden_small()
    cfg = WaveGlowConfig.from_dict(cfg_d)
    mel = golden["mel_postnet"].astype(np.float32)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=False), tf32=True)
    out = ctx.empty((1, mel.shape[2] * 256), np.float32)
    out.poison()
    err = rel_l2(wg.infer(ctx.to_device(mel), [mel.shape[2]], sigma=0.0, out=out).to_host(), golden["audio"])
    print(f"golden small WaveGlow: fp32+tf32 {err:.2e}")
    assert err < TF32_TOL


@pytest.mark.parametrize("batch", [1, 2, 3, 8, 32])
def test_tf32_full_waveglow_ragged_given_z(ctx, full, batch):
    """The FP32 engine with TF32 GEMMs against the NumPy reference (same inputs as
    test_full_waveglow_ragged_given_z), and the strict FP32 engine next to it on the same context
    (one cuBLAS handle): strict stays strict, before and after the TF32 engine ran."""
    cfg, w, lengths, mel, z, sigma, ref = _ragged_case(full, batch)
    packed = PackedWaveGlow.from_weights(cfg, w, fp16=False)
    engines = {"strict": WaveGlowGpu(ctx, packed), "tf32": WaveGlowGpu(ctx, packed, tf32=True)}
    d_mel = ctx.to_device(mel)
    got = {}
    for key in ("strict", "tf32", "strict again"):
        wg = engines[key.split()[0]]
        out = ctx.empty(ref.shape, np.float32)
        out.poison()
        got[key] = wg.infer(d_mel, lengths, sigma=sigma, noise=wg.set_noise_from_z(z, lengths, sigma),
                            out=out).to_host()
        for b, n in enumerate(lengths):
            assert not got[key][b, n * 256:].any(), "samples past an item's length must be zero"
    errs = {k: rel_l2(v, ref) for k, v in got.items()}
    print(f"full WaveGlow B={batch} lengths={lengths}: fp32 {errs['strict']:.2e} fp32+tf32 {errs['tf32']:.2e}")
    assert errs["strict"] < FP32_TOL
    assert np.array_equal(got["strict again"], got["strict"]), "the TF32 engine changed the strict one"
    assert errs["tf32"] < TF32_TOL
    assert _tf32_visible(errs["tf32"]), f"TF32 error {errs['tf32']:.1e}: the GEMMs did not run in TF32"


def test_tf32_is_reproducible_and_deterministic_noise_path(ctx, full):
    """Same input, same bits; Philox noise drawn on the device works the same with TF32, and
    sigma 0 is the reference's mean path within the TF32 bound."""
    cfg, w, ref_model = full
    rng = np.random.default_rng(13)
    lengths = [6, 3]
    mel = _padded_mel(rng, lengths)
    d_mel = ctx.to_device(mel)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=False), tf32=True)
    a = wg.infer(d_mel, lengths, sigma=0.6, seed=3).to_host()
    b = wg.infer(d_mel, lengths, sigma=0.6, seed=3).to_host()
    assert np.array_equal(a, b)
    z0 = wg.infer(d_mel, lengths, sigma=0.0, seed=9).to_host()
    err = rel_l2(z0, ref_model.infer(mel, sigma=0.0, lengths=lengths))
    assert err < TF32_TOL and _tf32_visible(err), err


def test_tf32_is_refused_by_the_fp16_engine(ctx, full):
    cfg, w, _ = full
    with pytest.raises(ValueError, match="FP32 engine only"):
        WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), tf32=True)


def test_noise_channel_order_matches_reference_convention():
    cfg = WaveGlowConfig()
    # 4 channels start the reverse flow (last in the group), then z[4:6] at flow 8 and z[6:8] at flow 4
    assert noise_channel_order(cfg).tolist() == [6, 7, 4, 5, 0, 1, 2, 3]


# ------------------------------------------------------------------------------------- denoiser


@pytest.mark.parametrize("batch", [1, 2, 3, 8, 32])
def test_denoiser_ragged(ctx, batch):
    rng = np.random.default_rng(200 + batch)

    class _FakeWaveGlow:  # the reference denoiser only needs infer() for its bias spectrum
        def infer(self, mel, sigma):
            return (0.01 * rng.standard_normal((1, mel.shape[2] * 256))).astype(np.float32)

    ref_dn = Denoiser(_FakeWaveGlow())
    gpu_dn = DenoiserGpu(ctx, ref_dn.bias_spec[0, :, 0])
    lengths = [int(n) for n in rng.integers(600, 9000, size=batch)]
    lengths[0] = 9000
    audio = (0.1 * rng.standard_normal((batch, max(lengths)))).astype(np.float32)
    out = ctx.empty(audio.shape, np.float32)
    out.poison()
    got = gpu_dn.denoise(ctx.to_device(audio), lengths, strength=0.5, out=out).to_host()
    for b, n in enumerate(lengths):
        ref = ref_dn(audio[b:b + 1, :n], strength=0.5)[0]
        assert rel_l2(got[b, : len(ref)], ref) < FP32_TOL
        assert not got[b, len(ref):].any()


def test_golden_denoiser(ctx):
    golden, w, cfg_d, _, _ = golden_small()
    cfg = WaveGlowConfig.from_dict(cfg_d)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=False))
    dn = DenoiserGpu.from_waveglow(ctx, wg)
    audio = golden["audio"].astype(np.float32)
    got = dn.denoise(ctx.to_device(audio), [audio.shape[1]], strength=float(golden["strength"])).to_host()
    err = rel_l2(got, golden["denoised"])
    print(f"golden denoiser fp32: {err:.2e}")
    assert err < FP32_TOL
