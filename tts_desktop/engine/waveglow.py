"""WaveGlow inference on the GPU: mel (B, n_mel, F) on the device -> audio (B, F*256) on the device.

The work is NVIDIA's `WaveGlow.infer` (see tts_desktop/model/waveglow.py for the plain NumPy
version); what changes is how it is laid out for the GPU (kernels/waveglow.cu explains the buffers):

- time-major rows, a ragged batch laid end to end, so every GEMM runs over all items at once and
  no time is spent on padding;
- upsample: one strided-batched GEMM straight into the cond columns (no overlap-add pass);
- per WN layer: GEMM [taps of h | cond] -> gate kernel -> res GEMM -> residual kernel. in_layer and
  cond_layer share one GEMM (K = 3C + 640): their outputs are summed before the gate anyway. The
  FP16 engine (256 or 128 channels, where the GPU's shared memory allows) does gate -> res GEMM ->
  residual in one kernel, wg_layer_fused; on sm_90 (the default there) the GEMM is our own
  kernels/wg_gemm_gate.cu with the gate in its epilogue, so that only the acts reach memory, and with
  cond_layer folded into the upsampler per phase (fold_cond): K = 3C + 4 n_mel, no upsample GEMM;
- opt-in (`layer_kernel`, written without a GPU in session 11, not yet run): each WN layer as one
  kernel, kernels/wg_layer.cu: the folded GEMM's acts stay in shared memory, the skip share and the
  res GEMM run on wgmma from there, and h's update and the next layer's taps go to a second XS;
- the skip path is folded into the `end` conv at pack time (W_end W_skip_i is 2*n_half x C), so
  skips never touch memory and the res GEMM is C x C instead of 2C x C;
- the small per-flow work (affine coupling inverse, inverse 1x1 conv, next flow's start conv) is
  one kernel between flows.

FP16 engine: every GEMM operand and output in float16 with FP32 accumulation (cublasGemmEx, and
wg_layer_fused's mma.sync for the res GEMM + gate + residual, see kernels/waveglow.cu); the WN
output accumulator and the audio stay float32; the residual stream h is float16 (the centre tap of
the GEMM operand, as in NVIDIA's FP16 model) with the fused kernel's default h_half, float32
otherwise. FP32 engine: all float32, cublasSgemm without TF32 (strict), unless built with
`tf32=True`: then the upsample GEMM and each layer's in/cond and res GEMMs run as cublasGemmEx with
COMPUTE_32F_FAST_TF32 (TF32 tensor cores: operands with a 10-bit mantissa, FP32 accumulation,
float32 storage everywhere); every kernel of this file (gate, residual, coupling, inverse 1x1 conv,
start conv, the skip/end product) stays float32 arithmetic either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..model.config import WaveGlowConfig
from .runtime import CUDA_R_16F, CUDA_R_32F, DeviceArray, GpuContext
from .stage_util import launch

UPSAMPLE_KERNEL = 1024  # NVIDIA hard-codes ConvTranspose1d(n_mel, n_mel, 1024, stride=256)
UPSAMPLE_STRIDE = 256
_THREADS = 256


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def remaining_channels(config: WaveGlowConfig) -> list[int]:
    """Channels the audio has inside flow k (NVIDIA drops n_early_size every n_early_every flows)."""
    out, n = [], config.n_group
    for k in range(config.n_flows):
        if k % config.n_early_every == 0 and k > 0:
            n -= config.n_early_size
        out.append(n)
    return out


def noise_channel_order(config: WaveGlowConfig) -> np.ndarray:
    """perm[s] = the channel of z (NVIDIA's infer_onnx order, as the NumPy reference takes it) that
    lands in channel s of the final audio group. The engine places all noise up front in final
    positions; the reverse flow then only widens its window of active channels."""
    nr = remaining_channels(config)
    g = config.n_group
    perm = np.empty(g, np.int64)
    start = g - nr[-1]
    perm[start:] = np.arange(nr[-1])
    nxt = nr[-1]
    for k in reversed(range(config.n_flows)):
        if k % config.n_early_every == 0 and k > 0:
            start -= config.n_early_size
            perm[start:start + config.n_early_size] = np.arange(nxt, nxt + config.n_early_size)
            nxt += config.n_early_size
    assert start == 0
    return perm


FUSED_WARPS = 16  # kernels/waveglow.cu WGF_WARPS


def fused_shape_ok(c: int, rows: int, groups: int) -> bool:
    """wg_layer_fused's tile rules: a tile's gate items (row, 8 channels) split evenly over a
    group's threads, and each thread keeps the same 8 channels from tile to tile."""
    threads = 32 * FUSED_WARPS // groups
    return rows % 16 == 0 and (rows * c // 8) % threads == 0 and threads % (c // 8) == 0


def fused_smem_bytes(c: int, rows: int, groups: int) -> int:
    """Dynamic shared memory of wg_layer_fused (kernels/waveglow.cu): Wp, then per group As | Ss | Rs | rb.
    At 256 channels: 194 KiB in two groups of 16 rows, 202 KiB in one of 32; at 128: 70 KiB either way.
    So NVIDIA's 256-channel WaveGlow fuses only where a block may have ~200 KB (sm_90, sm_100);
    A100 (163 KB) and the GeForce cards (99 KB) take the unfused path for it."""
    ks = c // 16
    w = (c // 8 + 2) * ks * 32 * 8
    per_group = rows * (c + 8) * 2 + min(ks, FUSED_WARPS // groups) * rows * 8 * 4 + rows * (c + 8) * 4 + 2 * rows * 2 * 4
    return w + groups * per_group


# wg_layer_fused's shapes, best first: (groups of warps, rows per tile)
FUSED_SHAPES = ((2, 16), (1, 32))


def fused_candidates(groups: int | None = None, rows: int | None = None) -> list[tuple[int, int]]:
    """FUSED_SHAPES narrowed to the groups asked for, with the rows asked for (else each shape's)."""
    return [(g, rows or bm) for g, bm in FUSED_SHAPES if groups in (None, g)]


def fused_shape(c: int, limit: int, groups: int | None = None, rows: int | None = None) -> tuple[int, int] | None:
    """(groups, rows per tile) for wg_layer_fused at C = c channels on a GPU whose blocks may have
    `limit` bytes of shared memory: the first of fused_candidates that fits; None where none does
    (the engine then runs unfused)."""
    for g, bm in fused_candidates(groups, rows):
        if fused_shape_ok(c, bm, g) and fused_smem_bytes(c, bm, g) <= limit:
            return g, bm
    return None


def fused_supported(config: WaveGlowConfig) -> bool:
    """wg_layer_fused's shapes: a group's 8 or 16 warps own C/8 or C/16 columns each (whole n-tiles),
    the skip product is one 8-column n-tile, n_group <= 8. Whether W_res (C x C fp16) and the
    tiles then fit this GPU's shared memory is fused_smem_bytes' question (WaveGlowGpu)."""
    c = config.wn_n_channels
    return c % 128 == 0 and c <= 256 and config.n_group <= 8


# kernels/wg_gemm_gate.cu (sm_90a): the layer GEMM with the gate in its epilogue. Tile 128 rows x 256
# interleaved columns, K in steps of 64 through GG_STAGES shared-memory stages.
# Unfolded, it ties with cuBLAS + the gate in wg_layer_fused at batch 32 and loses at batch 1 (session
# 9). With the cond folded (GG_FOLD, which only an own GEMM can pick per tile) it is the default on
# sm_90: WaveGlow FP16 on the H100 8.07 vs 9.06 ms at batch 1 (graph) and 218.8 vs 248.8 ms at batch 32
# (docs/gpu-notes.md, session 10).
GG_BM, GG_BN, GG_BK, GG_STAGES, GG_THREADS = 128, 256, 64, 4, 384


def gemm_gate_smem_bytes(stages: int = GG_STAGES) -> int:
    """wg_gemm_gate's dynamic shared memory: the stages, the two consumer warpgroups' staging of
    64 rows x (128 + 8) halves each, and two mbarriers per stage: 226 KiB, which only sm_90's
    227 KiB per block holds."""
    return stages * (GG_BM + GG_BN) * GG_BK * 2 + 2 * 64 * (GG_BN // 2 + 8) * 2 + 2 * stages * 8


def gemm_gate_supported(config: WaveGlowConfig, cc: tuple[int, int], limit: int) -> bool:
    """Whether wg_gemm_gate can run this WaveGlow: wgmma and setmaxnreg exist only on sm_90 (built
    as sm_90a), the columns (2C) must be whole 256-wide tiles, and its stages must fit the GPU's
    shared memory per block. K needs no rule: TMA zero-fills past the tensor maps' K columns."""
    return tuple(cc) == (9, 0) and (2 * config.wn_n_channels) % GG_BN == 0 and gemm_gate_smem_bytes() <= limit


# kernels/wg_layer.cu (sm_90a): the whole WN layer in one kernel (the folded gate GEMM, then the skip
# share and the res GEMM on wgmma from the acts in shared memory, h's update and the next layer's
# taps into a second XS). Written in session 11 without a GPU: compiled, not yet run; opt-in.
GL_STAGES = 3


def layer_kernel_smem_bytes(c: int, stages: int = GL_STAGES) -> int:
    """wg_layer's dynamic shared memory: the stages (A 128 x 64 + B 256 x 64 fp16), the acts tile
    (128 x C fp16), the skip weights (16 x C fp16) and two mbarriers per stage: 216 KiB at C = 256."""
    return stages * (GG_BM + GG_BN) * GG_BK * 2 + GG_BM * c * 2 + 16 * c * 2 + 2 * stages * 8


def skip_hi_lo(w_es: np.ndarray) -> np.ndarray:
    """wg_layer's skip weights: W_end W_skip (2 n_half x C, float) as 16 rows of fp16, the rounded
    weights in rows 0.. and what rounding lost in rows 8..; zero rows past 2 n_half."""
    w = np.asarray(w_es, np.float64)
    if len(w) > 8:
        raise ValueError("the skip share has at most 8 outputs (n_group <= 8)")
    out = np.zeros((16, w.shape[1]), np.float16)
    out[: len(w)] = w.astype(np.float16)
    out[8: 8 + len(w)] = (w - out[: len(w)].astype(np.float64)).astype(np.float16)
    return out


def interleave_gate_rows(w: np.ndarray) -> np.ndarray:
    """[in_layer | cond] weights (2C x K: tanh rows 0..C-1, sigmoid rows C..2C-1) -> rows 2j = tanh
    channel j and 2j + 1 = sigmoid channel j, so wg_gemm_gate's accumulator pairs are gate pairs."""
    c = w.shape[0] // 2
    out = np.empty_like(w)
    out[0::2], out[1::2] = w[:c], w[c:]
    return out


class _CudaArray:
    """The __cuda_array_interface__ of a strided view of device memory (shape and strides in
    elements, row-major order): what cuda.core's StridedMemoryView, and so its TMA descriptors, are
    made from."""

    def __init__(self, ptr: int, shape: tuple[int, ...], strides: tuple[int, ...], dtype) -> None:
        dt = np.dtype(dtype)
        self.__cuda_array_interface__ = {"shape": tuple(shape), "strides": tuple(s * dt.itemsize for s in strides),
                                         "typestr": dt.str, "data": (int(ptr), False), "version": 3}


def tensor_map(a: DeviceArray, cols: int, box_rows: int, phases: int = 0):
    """A TMA descriptor over a 2-D DeviceArray's first `cols` columns: boxes of box_rows x GG_BK
    (one 128-byte swizzle row of fp16 per box row), zero fill outside. phases > 0: the rows read as
    [rows / phases][phases] (frame, phase), boxes of box_rows frames x 1 phase (wg_gemm_gate's
    GG_FOLD reads one phase's rows)."""
    from cuda.core import TensorMapDescriptorOptions
    from cuda.core._tensor_map import TensorMapSwizzle  # cuda.core 1.2 exports the enum nowhere else
    from cuda.core.utils import StridedMemoryView

    rows, ld = a.shape
    if phases:
        arr = _CudaArray(a.ptr, (rows // phases, phases, cols), (phases * ld, ld, 1), a.dtype)
        box = (box_rows, 1, GG_BK)
    else:
        arr, box = _CudaArray(a.ptr, (rows, cols), (ld, 1), a.dtype), (box_rows, GG_BK)
    view = StridedMemoryView.from_cuda_array_interface(arr, -1)
    return view.as_tensor_map(options=TensorMapDescriptorOptions(box_dim=box, swizzle=TensorMapSwizzle.SWIZZLE_128B))


def pack_fused_b(w_res: np.ndarray | None, w_es: np.ndarray) -> np.ndarray:
    """wg_layer_fused's B operand in mma.m16n8k16 fragment order: (NT, KS, 32 lanes, 4) float16.
    Rows of the (NT*8) x C matrix: W_res (zeros for the last layer, which has no res), then the skip
    weights W_end W_skip_i as fp16 hi (8 rows, zero past 2*n_half) and fp16 lo = the remainder."""
    c = w_es.shape[1]
    wb = np.zeros((c + 16, c), np.float64)
    if w_res is not None:
        wb[:c] = np.asarray(w_res, np.float16)
    hi = np.asarray(w_es, np.float16)
    wb[c: c + len(w_es)] = hi
    wb[c + 8: c + 8 + len(w_es)] = np.asarray(w_es - hi.astype(np.float64), np.float16)
    nt, ks, lane = np.arange(c // 8 + 2), np.arange(c // 16), np.arange(32)
    n = nt[:, None, None, None] * 8 + (lane // 4)[None, None, :, None]
    k = ks[None, :, None, None] * 16 + (lane % 4)[None, None, :, None] * 2 + np.array([0, 1, 8, 9])
    return np.ascontiguousarray(wb[n, k].astype(np.float16))


@dataclass
class PackedWaveGlow:
    """Host-side weights in the engine's layouts (float64 algebra, then cast)."""

    config: WaveGlowConfig
    fp16: bool
    n_mel: int
    up_w: np.ndarray  # (256/G * n_mel * G, KU) act dtype: rows (phase p, channel c, sample s)
    ku: int
    flows: list[dict] = field(default_factory=list)  # per flow k

    @property
    def act_dtype(self):
        return np.float16 if self.fp16 else np.float32

    @classmethod
    def from_weights(cls, config: WaveGlowConfig, weights: Mapping[str, np.ndarray], fp16: bool = True):
        g, c, L, K = config.n_group, config.wn_n_channels, config.wn_n_layers, config.wn_kernel_size
        if UPSAMPLE_STRIDE % g or c % 2 or K % 2 == 0:
            raise ValueError(f"unsupported WaveGlow shape: n_group {g}, channels {c}, kernel {K}")
        act = np.float16 if fp16 else np.float32
        f64 = lambda name: np.asarray(weights[name], np.float64)  # noqa: E731

        # upsampler: rows (p, c, s) <- sample r = p*G + s of channel c; columns (tap j, c_in), bias, pad
        w = f64("upsample.weight")  # (c_in, c_out, 1024)
        n_mel = w.shape[0]
        taps = UPSAMPLE_KERNEL // UPSAMPLE_STRIDE
        ku = _round8(taps * n_mel + 1)
        P = UPSAMPLE_STRIDE // g
        wj = w.reshape(n_mel, n_mel, taps, P, g)  # (ci, c, j, p, s): kernel index r + 256 j, r = p*G + s
        up = np.zeros((P, n_mel, g, ku))
        up[..., : taps * n_mel] = wj.transpose(3, 1, 4, 2, 0).reshape(P, n_mel, g, taps * n_mel)
        up[..., taps * n_mel] = f64("upsample.bias")[None, :, None]
        packed = cls(config, fp16, n_mel, up.reshape(P * n_mel * g, ku).astype(act), ku)

        nr = remaining_channels(config)
        for k in range(config.n_flows):
            p = f"WN.{k}."
            nh = nr[k] // 2
            w_end, b_end = f64(p + "end.weight")[:, :, 0], f64(p + "end.bias")
            layers = []
            skip_bias = np.zeros(c)
            for i in range(L):
                w_in = f64(f"{p}in_layers.{i}.weight")  # (2C, C, K)
                w_cond = f64(f"{p}cond_layers.{i}.weight")[:, :, 0]  # (2C, n_mel*G)
                wcat = np.concatenate([w_in[:, :, j] for j in range(K)] + [w_cond], axis=1)
                gate_b = f64(f"{p}in_layers.{i}.bias") + f64(f"{p}cond_layers.{i}.bias")
                w_rs, b_rs = f64(f"{p}res_skip_layers.{i}.weight")[:, :, 0], f64(f"{p}res_skip_layers.{i}.bias")
                if i < L - 1:
                    w_res, b_res, w_skip, b_skip = w_rs[:c], b_rs[:c], w_rs[c:], b_rs[c:]
                else:
                    w_res = b_res = None
                    w_skip, b_skip = w_rs, b_rs
                skip_bias += b_skip
                w_es = w_end @ w_skip  # (2nh, C)
                layers.append(dict(
                    wcat=np.ascontiguousarray(wcat.astype(act)),
                    gate_b=gate_b.astype(np.float32),
                    w_es=np.ascontiguousarray(w_es.astype(np.float32)),
                    w_res=None if w_res is None else np.ascontiguousarray(w_res.astype(act)),
                    b_res=None if b_res is None else b_res.astype(np.float32),
                    w_frag=pack_fused_b(w_res, w_es) if fp16 and fused_supported(config) else None,
                ))
            w_inv = np.linalg.inv(f64(f"convinv.{k}.conv.weight")[:, :, 0])
            packed.flows.append(dict(
                n_rem=nr[k],
                layers=layers,
                w_start=np.ascontiguousarray(f64(p + "start.weight")[:, :, 0].astype(np.float32)),  # (C, nh)
                b_start=f64(p + "start.bias").astype(np.float32),
                end_bias=(w_end @ skip_bias + b_end).astype(np.float32),
                w_inv=np.ascontiguousarray(w_inv.astype(np.float32)),
            ))
            assert packed.flows[-1]["w_start"].shape == (c, nh)
        return packed


class _Buffers:
    """Device scratch for one total row count (grown on demand, reused across calls)."""

    def __init__(self, ctx: GpuContext, packed: PackedWaveGlow, rows: int, frames: int, fused: bool = False,
                 gemm_gate: bool = False, fold: bool = False, layer_kernel: bool = False):
        cfg = packed.config
        c, g, act = cfg.wn_n_channels, cfg.n_group, packed.act_dtype
        self.rows, self.frames = rows, frames
        # XS: the taps of h, then the cond columns (none with the cond folded: the GEMM reads the im2col)
        self.ld = _round8(cfg.wn_kernel_size * c + (0 if fold else packed.n_mel * g))
        self.xs = ctx.zeros((rows, self.ld), act)  # pad columns stay zero; GEMMs never read them anyway
        # the layer GEMM's output: Y (2C pre-activations), or with gemm_gate the C gated acts
        self.y = ctx.empty((rows, c if gemm_gate else 2 * c), act)
        self.tm_xs = self.tm_cols = None  # wg_gemm_gate's TMA descriptors of xs and cols, made at first use
        # wg_layer writes the next layer's taps while other tiles still read this layer's: two XS
        self.xs2 = ctx.zeros((rows, self.ld), act) if layer_kernel else None
        self.tm_xs2 = None
        # acts and res output exist only on the unfused path (wg_layer_fused keeps them on chip)
        self.a = None if fused else ctx.empty((rows, c), act)
        self.r = None if fused else ctx.empty((rows, c), act)
        self.h = ctx.empty((rows, c), np.float32)
        self.state = [ctx.empty((rows, g), np.float32) for _ in range(2)]
        self.acc = [ctx.empty((rows, g), np.float32) for _ in range(2)]
        self.cols = ctx.empty((frames, packed.ku), act)


class WaveGlowGpu:
    """WaveGlow inference on DeviceArrays. `infer` queues work on the context's stream and returns
    without synchronising, so stages chain on the device (and can be captured in a CUDA graph)."""

    def __init__(self, ctx: GpuContext, packed: PackedWaveGlow, *, fused: bool | None = None,
                 h_half: bool = True, fused_rows: int | None = None, fused_groups: int | None = None,
                 tf32: bool = False, gemm_gate: bool | None = None, gemm_gate_cluster: int = 1,
                 fold_cond: bool | None = None, layer_kernel: bool | None = None):
        """fused (FP16 engine, default where the shape allows): one wg_layer_fused kernel per layer
        instead of gate kernel + cuBLAS res GEMM + residual kernel. h_half (fused only): the residual
        stream kept as the fp16 centre tap of XS (NVIDIA's FP16 model keeps it in fp16 too) rather
        than a float32 buffer. fused_groups: 2 independent groups of 8 warps per block, each with its
        own tiles and barriers (kernels/waveglow.cu, WG_GROUPS), or 1 group of 16; default: 2 where
        the GPU's shared memory allows it, else 1. fused_rows: rows per tile of the fused kernel (16
        or 32; default 16 with two groups, 32 with one). With fused=None the unfused path is taken
        where no fused shape fits the GPU's shared memory.
        tf32 (FP32 engine only): the cuBLAS GEMMs on TF32 tensor cores (see the module doc).
        gemm_gate (fused FP16 on sm_90 only; default there, see GG_BM's comment): the layer GEMM as
        kernels/wg_gemm_gate.cu, with the gate in its epilogue, instead of cuBLAS.
        gemm_gate_cluster 2: its blocks in pairs that share each weight tile (TMA multicast; measured
        no faster), 1: each block alone.
        fold_cond (with gemm_gate, blocks alone): cond_layer . upsample folded into one matrix per
        phase and layer, made on the device here (wg_gemm_gate.cu's GG_FOLD; 1 GB at 256 channels):
        the layer GEMM's K drops from 3C + 8 n_mel to 3C + 4 n_mel and the upsample GEMM goes.
        Default: on wherever wg_gemm_gate runs alone.
        layer_kernel (with fold_cond and h_half): each WN layer as one kernel, kernels/wg_layer.cu,
        instead of wg_gemm_gate + wg_layer_fused. Opt-in: written without a GPU, not yet measured;
        None: on where it can run if the environment sets TTS_DESKTOP_WG_LAYER=1 (so that `bench`
        can time it end to end; the switch is recorded with the result), else off."""
        if tf32 and packed.fp16:
            raise ValueError("tf32 applies to the FP32 engine only (its GEMMs are float32)")
        self.tf32 = bool(tf32)
        self.ctx, self.packed, self.config = ctx, packed, packed.config
        cfg = packed.config
        c = cfg.wn_n_channels
        self.vec = 8 if c % 8 == 0 else 2
        can_fuse = packed.fp16 and fused_supported(cfg) and packed.flows[0]["layers"][0].get("w_frag") is not None
        if fused and not can_fuse:
            raise ValueError("the fused WN layer needs the FP16 engine, 128 or 256 channels and n_group <= 8")
        if fused_groups not in (None, *(g for g, _ in FUSED_SHAPES)):
            raise ValueError("fused_groups must be 1 or 2")
        limit = ctx.max_shared_per_block
        shape = fused_shape(c, limit, fused_groups, fused_rows) if can_fuse else None
        self.fused_groups, self.fused_rows = shape or fused_candidates(fused_groups, fused_rows)[0]
        self.fused_smem = fused_smem_bytes(c, self.fused_rows, self.fused_groups)
        if fused and shape is None:
            raise ValueError(f"the fused WN layer does not fit {c} channels in {self.fused_rows}-row tiles x "
                             f"{self.fused_groups} group(s): {self.fused_smem} bytes of shared memory, this GPU "
                             f"allows {limit}")
        self.fused = shape is not None if fused is None else bool(fused)
        self.h_half = bool(h_half) and self.fused
        if gemm_gate_cluster not in (1, 2):
            raise ValueError("gemm_gate_cluster must be 1 or 2")
        gg_ok = self.fused and gemm_gate_supported(cfg, ctx.cc, limit)
        if gemm_gate and not gg_ok:
            raise ValueError("wg_gemm_gate needs the fused FP16 layer on an sm_90 GPU and 2C a multiple of 256")
        self.gemm_gate = gg_ok if gemm_gate is None else bool(gemm_gate)
        if fold_cond and not (self.gemm_gate and gemm_gate_cluster == 1):
            raise ValueError("fold_cond needs gemm_gate with gemm_gate_cluster 1")
        self.fold = (self.gemm_gate and gemm_gate_cluster == 1) if fold_cond is None else bool(fold_cond)
        layer_ok = self.fold and self.h_half and layer_kernel_smem_bytes(c) <= limit
        if layer_kernel is None:
            layer_kernel = layer_ok and os.environ.get("TTS_DESKTOP_WG_LAYER", "0") == "1"
        if layer_kernel and not (self.fold and self.h_half):
            raise ValueError("layer_kernel needs the folded wg_gemm_gate (fold_cond) and h_half")
        if layer_kernel and layer_kernel_smem_bytes(c) > limit:
            raise ValueError(f"wg_layer needs {layer_kernel_smem_bytes(c)} bytes of shared memory per block, "
                             f"this GPU allows {limit}")
        self.layer_kernel = bool(layer_kernel)
        defines = {"WG_G": cfg.n_group, "WG_C": c, "WG_VEC": self.vec}
        if packed.fp16:
            defines["ACT_HALF"] = 1
        if self.fused:
            defines["WG_BM"] = self.fused_rows
            if self.fused_groups > 1:
                defines["WG_GROUPS"] = self.fused_groups
            if self.gemm_gate:
                defines["WG_ACTS_IN"] = 1  # the fused layer starts from wg_gemm_gate's acts
        self.mod = ctx.compile(["waveglow.cu"], defines)
        self.gg_cluster = gemm_gate_cluster
        gg_defines = {"GG_CLUSTER": gemm_gate_cluster, **({"GG_FOLD": 1} if self.fold else {})}
        self.k_gg = ctx.compile(["wg_gemm_gate.cu"], gg_defines,
                                arch=ctx.arch + "a").kernel("wg_gemm_gate") if self.gemm_gate else None
        self.k_layer = ctx.compile(["wg_layer.cu"], {"GL_C": c},
                                   arch=ctx.arch + "a").kernel("wg_layer") if self.layer_kernel else None
        self.k_cols = self.mod.kernel("wg_upsample_cols")
        self.k_noise = self.mod.kernel("wg_noise")
        self.k_step = self.mod.kernel("wg_flow_step")
        self.k_gate = self.mod.kernel("wg_gate")
        self.k_res = self.mod.kernel("wg_residual")
        self.k_fold = self.mod.kernel("wg_fold_finish")
        self.k_fused = self.mod.kernel("wg_layer_fused") if self.fused else None
        up = ctx.to_device(packed.up_w)
        self.up_w = up
        self.flows = []
        for f in packed.flows:
            d = {key: ctx.to_device(f[key]) for key in ("w_start", "b_start", "end_bias", "w_inv")}
            d["n_rem"] = f["n_rem"]
            d["layers"] = [{key: (None if v is None else
                                  ctx.to_device(interleave_gate_rows(v) if key == "wcat" and self.gemm_gate else v))
                            for key, v in layer.items()}
                           for layer in f["layers"]]
            if self.fold:
                for dl, layer in zip(d["layers"], f["layers"]):
                    dl["w_fold"], dl["b_fold"] = self._fold_cond(layer["wcat"], dl["gate_b"])
            if self.layer_kernel:
                for dl, layer in zip(d["layers"], f["layers"]):
                    dl["w_skip16"] = ctx.to_device(skip_hi_lo(layer["w_es"]))
            self.flows.append(d)
        if self.fold:
            self.up_w = None  # only the fold read it
        self._buf: _Buffers | None = None
        self._off_cache: dict[tuple[int, ...], tuple[DeviceArray, DeviceArray]] = {}
        self._dt = CUDA_R_16F if packed.fp16 else CUDA_R_32F

    # ---------------------------------------------------------------- helpers
    def _buffers(self, rows: int, frames: int) -> _Buffers:
        b = self._buf
        if b is None or b.rows < rows or b.frames < frames:
            self._buf = None  # free the old scratch first
            self._buf = _Buffers(self.ctx, self.packed, rows, frames, self.fused, self.gemm_gate, self.fold,
                                 self.layer_kernel)
        return self._buf

    def _fold_cond(self, wcat: np.ndarray, gate_b: DeviceArray) -> tuple[DeviceArray, DeviceArray]:
        """One layer's folded cond weights Wf = [W_cond U_r for each phase r] ((P 2C) x 4 n_mel, fp16,
        rows interleaved as wg_gemm_gate wants them) and per-phase gate biases bf (P x 2C float32,
        gate_b + W_cond times the upsampler's bias column): one strided-batched GEMM of the fp16
        W_cond and upsampler with FP32 accumulation and output, then wg_fold_finish rounds once. On
        a recording context (engine build, no device) only the arrays are declared."""
        ctx, pk, cfg = self.ctx, self.packed, self.config
        P, c2 = UPSAMPLE_STRIDE // cfg.n_group, 2 * cfg.wn_n_channels
        k_mel = (UPSAMPLE_KERNEL // UPSAMPLE_STRIDE) * pk.n_mel
        wf, bf = ctx.empty((P * c2, k_mel), pk.act_dtype), ctx.empty((P, c2), np.float32)
        if not isinstance(ctx, GpuContext):
            return wf, bf
        kt = cfg.wn_kernel_size * cfg.wn_n_channels
        wc = ctx.to_device(np.ascontiguousarray(interleave_gate_rows(wcat[:, kt:])))  # (2C, n_mel G)
        F = ctx.empty((P, c2, pk.ku), np.float32)
        ctx.blas.gemm_strided_batched(wc, self.up_w.view((P, self.up_w.shape[0] // P, pk.ku)), F)
        n = P * c2 * (k_mel + 1)
        launch(ctx, self.k_fold, self._grid(n), _THREADS, F, P, c2, pk.ku, k_mel, gate_b,
               wf, bf)
        ctx.synchronize()  # wc and F are freed on return
        return wf, bf

    def _fold_maps(self, buf: _Buffers, kc: int, layer: dict) -> tuple[int, int]:
        """The folded GEMM's TMA descriptors, made at first use: XS's taps by (frame, phase) and the
        mel im2col (per buffer), the layer's taps weights and folded weights (per layer). Returns
        (phases, the im2col's K)."""
        P, k_mel = UPSAMPLE_STRIDE // self.config.n_group, layer["w_fold"].shape[1]
        if buf.tm_xs is None:
            buf.tm_xs = tensor_map(buf.xs, kc, GG_BM, phases=P)
            buf.tm_cols = tensor_map(buf.cols, k_mel, GG_BM)
        if "tm_w" not in layer:
            layer["tm_w"] = tensor_map(layer["wcat"], kc, GG_BN)
            layer["tm_f"] = tensor_map(layer["w_fold"], k_mel, GG_BN)
        return P, k_mel

    def _layer_gemm_gate(self, buf: _Buffers, rows: int, kc: int, layer: dict) -> None:
        """buf.y = gate(W XS) for one layer through wg_gemm_gate (TMA descriptors made at first use).
        Folded (self.fold): kc is the taps' K, and the cond part comes from buf.cols and the layer's
        w_fold."""
        c, cl = self.config.wn_n_channels, self.gg_cluster
        if self.fold:
            P, k_mel = self._fold_maps(buf, kc, layer)
            frames = rows // P
            units = P * ((frames + GG_BM - 1) // GG_BM) * (2 * c // GG_BN)
            launch(self.ctx, self.k_gg, min(units, self.ctx.sm_count), GG_THREADS, buf.tm_xs, layer["tm_w"], frames,
                   kc, c, layer["b_fold"], buf.y, buf.tm_cols, layer["tm_f"], k_mel, P,
                   shmem=gemm_gate_smem_bytes())
            return
        if buf.tm_xs is None:
            buf.tm_xs = tensor_map(buf.xs, kc, GG_BM)
        if "tm_w" not in layer:
            layer["tm_w"] = tensor_map(layer["wcat"], kc, GG_BN // self.gg_cluster)  # a block's share of B
        units = (rows + cl * GG_BM - 1) // (cl * GG_BM) * (2 * c // GG_BN)  # cl row tiles x one column tile
        # persistent: one block per SM (its shared memory allows no second), a cluster taking every
        # grid-th unit
        grid = min(units, self.ctx.sm_count // cl) * cl
        launch(self.ctx, self.k_gg, grid, GG_THREADS, buf.tm_xs, layer["tm_w"], rows,
               (kc + GG_BK - 1) // GG_BK * GG_BK, c, layer["gate_b"], buf.y, shmem=gemm_gate_smem_bytes(),
               cluster=cl)

    def _layer_whole(self, buf: _Buffers, rows: int, bsz: int, kc: int, layer: dict, n_out: int,
                     acc: DeviceArray, i: int) -> None:
        """Layer i of a flow through wg_layer: reads the taps in XS (i even) or XS2 (i odd), adds the
        skip share to acc, and, but for the last layer, writes the next layer's taps (dilation
        2^(i+1)) into the other one."""
        cfg = self.config
        c, K = cfg.wn_n_channels, cfg.wn_kernel_size
        P, k_mel = self._fold_maps(buf, kc, layer)
        if buf.tm_xs2 is None:
            buf.tm_xs2 = tensor_map(buf.xs2, kc, GG_BM, phases=P)
        has_res = layer["w_res"] is not None
        if has_res and "tm_r" not in layer:
            layer["tm_r"] = tensor_map(layer["w_res"], c, c)
        src, dst = (buf.xs, buf.xs2) if i % 2 == 0 else (buf.xs2, buf.xs)
        tm_src = buf.tm_xs if i % 2 == 0 else buf.tm_xs2
        frames = rows // P
        units = P * ((frames + GG_BM - 1) // GG_BM)
        launch(self.ctx, self.k_layer, min(units, self.ctx.sm_count), GG_THREADS, tm_src, layer["tm_w"],
               buf.tm_cols, layer["tm_f"], layer["tm_r"] if has_res else layer["tm_w"], frames, kc, k_mel, P,
               layer["b_fold"], layer["w_skip16"], n_out, acc, cfg.n_group,
               layer["b_res"] if has_res else layer["b_fold"], int(has_res), src, dst, buf.ld, K, 2 ** (i + 1),
               self._row_off, bsz, shmem=layer_kernel_smem_bytes(c))

    def _offsets(self, lengths: tuple[int, ...], spf: int):
        """Device copies of the items' frame and row offsets, cached per length tuple: nothing is
        copied in `infer` for lengths seen before, so a warmed-up `infer` can be graph-captured."""
        hit = self._off_cache.get(lengths)
        if hit is None:
            frame_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            hit = (self.ctx.to_device(frame_off), self.ctx.to_device(frame_off * spf))
            if len(self._off_cache) > 64:
                self._off_cache.clear()
            self._off_cache[lengths] = hit
        return hit

    def _grid(self, n: int) -> int:
        return (n + _THREADS - 1) // _THREADS

    def _gemm(self, m, n, k, a, lda, b, ldb, c, ldc):
        """Column-major C (m x n) = A^T (A stored k x m) @ B (k x n): the TN case cuBLAS is fastest at."""
        self.ctx.blas.gemm_raw(True, False, m, n, k, a, self._dt, lda, b, self._dt, ldb, c, self._dt, ldc,
                               tf32=self.tf32)

    def fused_layer(self, rows: int, bsz: int, layer: dict, n_out: int, acc: DeviceArray, d: int,
                    has_res: bool, row_off: DeviceArray | None = None, buf: _Buffers | None = None) -> None:
        """wg_layer_fused on buf.y (this layer's GEMM output: Y, or with gemm_gate the gated acts):
        acc += skip share; with has_res, h (or the fp16 centre tap) += res and the next layer's taps
        (dilation d) into buf.xs."""
        buf = self._buf if buf is None else buf
        row_off = self._row_off if row_off is None else row_off
        tiles = (rows + self.fused_rows - 1) // self.fused_rows
        blocks = (tiles + self.fused_groups - 1) // self.fused_groups
        launch(self.ctx, self.k_fused, min(blocks, self.ctx.sm_count), 512, rows, row_off, bsz, buf.y,
               layer["gate_b"], layer["w_frag"], layer["b_res"] if has_res else layer["gate_b"], int(has_res),
               n_out, acc, np.uint64(0) if self.h_half else buf.h, buf.xs, buf.ld, self.config.wn_kernel_size, d,
               shmem=self.fused_smem)

    # ---------------------------------------------------------------- public API
    def noise_shape(self, batch: int, mel_frames: int) -> tuple[int, int, int]:
        return batch, self.config.n_group, mel_frames * UPSAMPLE_STRIDE // self.config.n_group

    def set_noise_from_z(self, z: np.ndarray, lengths: Sequence[int], sigma: float) -> DeviceArray:
        """Caller-given unit noise z (B, n_group, L) in the reference's channel order -> a device
        state buffer for `infer(..., noise=...)` (host-side reordering; meant for tests)."""
        cfg = self.config
        perm = noise_channel_order(cfg)
        steps = [int(n) * UPSAMPLE_STRIDE // cfg.n_group for n in lengths]
        rows = np.concatenate([np.asarray(z[b][perm, : steps[b]], np.float32).T for b in range(len(steps))])
        return self.ctx.to_device(np.ascontiguousarray(np.float32(sigma) * rows))

    def infer(self, mel: DeviceArray, lengths: Sequence[int], sigma: float = 0.6, seed: int = 0,
              noise: DeviceArray | None = None, out: DeviceArray | None = None) -> DeviceArray:
        """mel (B, n_mel, F_max) float32 on the device, lengths (B,) valid frames -> audio
        (B, F_max*256) float32, each item as if alone, zero past lengths[b]*256.

        Noise: `noise` from `set_noise_from_z` if given, else Philox(seed) * sigma drawn on the
        device (sigma 0 gives the deterministic mean path)."""
        ctx, cfg, pk = self.ctx, self.config, self.packed
        bsz, n_mel, f_max = mel.shape
        if n_mel != pk.n_mel or len(lengths) != bsz:
            raise ValueError(f"mel {mel.shape} / lengths {list(lengths)} do not fit this WaveGlow")
        lengths = [int(n) for n in lengths]
        if min(lengths) < 1 or max(lengths) > f_max:
            raise ValueError(f"lengths must lie in 1..{f_max}")
        g, c, K, L = cfg.n_group, cfg.wn_n_channels, cfg.wn_kernel_size, cfg.wn_n_layers
        spf = UPSAMPLE_STRIDE // g  # group steps per mel frame
        frames = sum(lengths)
        rows = frames * spf
        buf = self._buffers(rows, frames)
        self._frame_off, self._row_off = self._offsets(tuple(lengths), spf)
        if out is None:
            out = ctx.empty((bsz, f_max * UPSAMPLE_STRIDE), np.float32)
        out.zero()
        chunks = c // self.vec

        # cond: im2col of the mel frames, then one batched GEMM per phase into XS's cond columns
        taps = UPSAMPLE_KERNEL // UPSAMPLE_STRIDE
        launch(ctx, self.k_cols, self._grid(frames * pk.ku), _THREADS, mel, n_mel, f_max, self._frame_off,
                   bsz, taps, buf.cols, pk.ku, frames)
        if not self.fold:  # folded, each layer's GEMM reads the im2col itself
            blas = ctx.blas
            cb = blas._cb
            esz = np.dtype(pk.act_dtype).itemsize
            m_p = n_mel * g
            cb.gemm_strided_batched_ex(
                blas.handle, cb.Operation.T, cb.Operation.N, m_p, frames, pk.ku, blas._scalar(1.0),
                self.up_w.ptr, self._dt, pk.ku, m_p * pk.ku, buf.cols.ptr, self._dt, pk.ku, 0,
                blas._scalar(0.0), buf.xs.ptr + K * c * esz, self._dt, spf * buf.ld, buf.ld, spf,
                blas.compute_type(self._dt, self._dt, self._dt, self.tf32), -1)

        # noise in final channel positions
        st_in = buf.state[0]
        if noise is not None:
            if noise.shape != (rows, g):
                raise ValueError(f"noise {noise.shape} does not match {(rows, g)}")
            st_in = noise
        else:
            n = rows * g
            launch(ctx, self.k_noise, self._grid((n + 3) // 4), _THREADS, buf.state[0], np.int64(n),
                       np.uint32(seed & 0xFFFFFFFF), np.uint32((seed >> 32) & 0xFFFFFFFF), float(sigma))

        null = np.uint64(0)
        grid_rows = self._grid(rows * chunks)
        gate_grid = min((rows + 7) // 8, 8 * ctx.sm_count)  # grid-stride: weights stay in registers
        kc = K * c + (0 if self.fold else n_mel * g)
        st_out_i, acc_i = 1, 0
        # start of the last flow (the reverse pass begins there)
        f = self.flows[-1]
        launch(ctx, self.k_step, grid_rows, _THREADS, rows, self._row_off, bsz, st_in, null, null, buf.acc[acc_i],
                   0, 0, null, 1, f["n_rem"], f["w_start"], f["b_start"], f["end_bias"], buf.h, buf.xs, buf.ld, K,
                   null, 0)
        for k in reversed(range(cfg.n_flows)):
            f = self.flows[k]
            n_out = f["n_rem"]  # 2 * n_half outputs
            for i, layer in enumerate(f["layers"]):
                if self.layer_kernel:
                    self._layer_whole(buf, rows, bsz, kc, layer, n_out, buf.acc[acc_i], i)
                    continue
                if self.gemm_gate:
                    self._layer_gemm_gate(buf, rows, kc, layer)
                else:
                    self._gemm(2 * c, rows, kc, layer["wcat"].ptr, kc, buf.xs.ptr, buf.ld, buf.y.ptr, 2 * c)
                if self.fused:
                    self.fused_layer(rows, bsz, layer, n_out, buf.acc[acc_i], 2 ** (i + 1), i < L - 1)
                    continue
                launch(ctx, self.k_gate, gate_grid, _THREADS, rows, buf.y, layer["gate_b"], buf.a, layer["w_es"],
                           n_out, buf.acc[acc_i])
                if i < L - 1:
                    self._gemm(c, rows, c, layer["w_res"].ptr, c, buf.a.ptr, c, buf.r.ptr, c)
                    launch(ctx, self.k_res, grid_rows, _THREADS, rows, self._row_off, bsz, buf.r, layer["b_res"],
                               buf.h, buf.xs, buf.ld, K, 2 ** (i + 1))
            nxt = self.flows[k - 1] if k > 0 else None
            st_out = buf.state[st_out_i]
            launch(ctx, self.k_step, grid_rows, _THREADS, rows, self._row_off, bsz, st_in, st_out,
                       buf.acc[acc_i], buf.acc[1 - acc_i], 1, f["n_rem"], f["w_inv"],
                       int(nxt is not None), nxt["n_rem"] if nxt else 0,
                       nxt["w_start"] if nxt else null, nxt["b_start"] if nxt else null,
                       nxt["end_bias"] if nxt else null, buf.h, buf.xs, buf.ld, K,
                       out if k == 0 else null, f_max * UPSAMPLE_STRIDE)
            st_in, st_out_i, acc_i = st_out, 1 - st_out_i, 1 - acc_i
        return out
