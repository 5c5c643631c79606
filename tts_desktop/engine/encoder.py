"""Tacotron2 encoder on the GPU: symbol ids -> memory (B, T_pad, 2H) float32, zero past each length.

embedding gather straight into the first conv's im2col operand; 3 x (conv k5 + folded BatchNorm +
ReLU) as cuBLAS GEMMs with fused epilogues (tts_desktop/engine/conv1d.py); the BiLSTM's input
projections of every step and both directions as one GEMM; the recurrence as one persistent kernel
(kernels/encoder_lstm.cu). Ragged batches are laid end to end, so each item is computed as if alone
(NVIDIA's padded batch lets the padding symbols leak into the last convolution outputs of shorter
items; the NumPy reference and this engine do not). The LSTM runs in float32 in both engines: it
is a small share of the time and its recurrence compounds rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..model.config import Tacotron2Config
from .conv1d import ConvLayer, ConvStackGpu, pack_stack
from .runtime import CUDA_R_16F, CUDA_R_32F, DeviceArray, GpuContext
from .stage_util import blocks, launch


@dataclass
class PackedEncoder:
    config: Tacotron2Config
    fp16: bool
    embedding: np.ndarray  # (n_symbols, E) float32
    convs: list[ConvLayer]
    w_ih: np.ndarray  # (8H, E) act dtype: fwd i,f,g,o then bwd
    bias: np.ndarray  # (2, 4H) float32: b_ih + b_hh
    w_hh: np.ndarray  # (2, 4H, H) float32

    @classmethod
    def from_weights(cls, config: Tacotron2Config, weights: Mapping[str, np.ndarray], fp16: bool = True):
        n = config.encoder_n_convolutions
        convs = pack_stack(weights, [(f"encoder.convolutions.{i}.0.conv", f"encoder.convolutions.{i}.1", "relu")
                                     for i in range(n)], fp16)
        f = lambda k: np.asarray(weights[k], np.float32)  # noqa: E731
        sfx = ("_l0", "_l0_reverse")
        w_ih = np.concatenate([f(f"encoder.lstm.weight_ih{s}") for s in sfx])
        bias = np.stack([f(f"encoder.lstm.bias_ih{s}") + f(f"encoder.lstm.bias_hh{s}") for s in sfx])
        w_hh = np.stack([f(f"encoder.lstm.weight_hh{s}") for s in sfx])
        h = w_hh.shape[2]
        if h % 32:
            raise ValueError(f"the LSTM kernel needs a hidden size that is a multiple of 32, got {h}")
        return cls(config, fp16, f("embedding.weight"), convs,
                   np.ascontiguousarray(w_ih.astype(np.float16 if fp16 else np.float32)), bias, w_hh)


class EncoderGpu:
    def __init__(self, ctx: GpuContext, packed: PackedEncoder):
        self.ctx, self.packed = ctx, packed
        self.hidden = packed.w_hh.shape[2]
        self.dim = packed.embedding.shape[1]
        self.convs = ConvStackGpu(ctx, packed.convs, packed.fp16, extra_channels=(self.dim,))
        self.lstm = ctx.compile(["encoder_lstm.cu"], {"LSTM_H": self.hidden}).kernel("lstm_recurrence")
        self.emb = ctx.to_device(packed.embedding)
        self.w_ih = ctx.to_device(packed.w_ih)
        self.bias = ctx.to_device(packed.bias)
        self.w_hh = ctx.to_device(packed.w_hh)
        self._dt = CUDA_R_16F if packed.fp16 else CUDA_R_32F
        self._rows = -1
        self._items = -1

    def _scratch(self, rows: int, n_items: int):
        if rows > self._rows:
            self.xl = self.ctx.empty((rows, self.packed.convs[-1].c_out), self.convs.act_dtype)
            self.g = self.ctx.empty((rows, 8 * self.hidden), np.float32)
            self._rows = rows
        if n_items > self._items:
            self.state = self.ctx.empty(4 * n_items * self.hidden + 2 * n_items * self.hidden + 2, np.float32)
            self._items = n_items

    def encode(self, ids: DeviceArray, lengths: Sequence[int], out: DeviceArray | None = None) -> DeviceArray:
        """ids (B, T_pad) int32 on the device, lengths (B,) -> (B, T_pad, 2H) float32."""
        ctx = self.ctx
        bsz, t_pad = ids.shape
        lengths = [int(n) for n in lengths]
        if len(lengths) != bsz or min(lengths) < 1 or max(lengths) > t_pad:
            raise ValueError(f"lengths {lengths} do not fit ids {ids.shape}")
        rows = sum(lengths)
        off = ctx.to_device(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        x = self.convs.buffers(rows)
        self._scratch(rows, bsz)
        c0 = self.packed.convs[0]
        launch(ctx, self.convs.mod.kernel("cv_embed_cols"), blocks(rows * self.dim // self.convs.vec), 256, ids,
               t_pad, self.emb, self.emb.shape[0], self.dim, off, bsz, rows, x[0], self.convs.ld[0], c0.k)
        e = self.packed.convs[-1].c_out
        self.convs.run(rows, off, bsz, last_out=self.xl, last_ld=e, last_k=1)
        h = self.hidden
        # G (8H x rows) = W_ih (8H x E) @ X^T: every step's input projection, both directions
        ctx.blas.gemm_raw(True, False, 8 * h, rows, e, self.w_ih.ptr, self._dt, e, self.xl.ptr, self._dt, e,
                          self.g.ptr, CUDA_R_32F, 8 * h)
        if out is None:
            out = ctx.empty((bsz, t_pad, 2 * h), np.float32)
        out.zero()
        self.state.zero()
        n_hb = 4 * bsz * h
        hbuf = self.state.ptr
        cbuf = hbuf + n_hb * 4
        bar = cbuf + 2 * bsz * h * 4
        launch(ctx, self.lstm, 2 * (h // 16), 128, self.g, self.bias, self.w_hh, off, bsz, max(lengths),
               np.uint64(hbuf), np.uint64(cbuf), np.uint64(bar), out, t_pad)
        self._off = off  # keep alive until the queued work has run
        return out
