"""A stack of 'same' Conv1d + folded BatchNorm + activation layers as cuBLAS GEMMs (the encoder's
three convs and the postnet's five). See kernels/encoder_conv.cu for the operand layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .runtime import CUDA_R_16F, CUDA_R_32F, GpuContext
from .stage_util import blocks, launch

BATCHNORM_EPS = 1e-5  # torch.nn.BatchNorm1d's default, which NVIDIA's models keep
ACT = {"none": 0, "relu": 1, "tanh": 2}


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def fold_conv_bn(weights: Mapping[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv (C_out, C_in, K) then inference BatchNorm -> (C_out, K*C_in) taps-outermost matrix and
    bias, in float64."""
    w = np.asarray(weights[f"{conv}.weight"], np.float64)
    b = np.asarray(weights[f"{conv}.bias"], np.float64)
    scale = np.asarray(weights[f"{bn}.weight"], np.float64) / np.sqrt(
        np.asarray(weights[f"{bn}.running_var"], np.float64) + BATCHNORM_EPS)
    w = w * scale[:, None, None]
    b = (b - np.asarray(weights[f"{bn}.running_mean"], np.float64)) * scale + np.asarray(weights[f"{bn}.bias"], np.float64)
    c_out, c_in, k = w.shape
    return w.transpose(0, 2, 1).reshape(c_out, k * c_in), b


@dataclass
class ConvLayer:
    w: np.ndarray  # (C_out, K*C_in) act dtype
    b: np.ndarray  # (C_out,) float32
    c_in: int
    c_out: int
    k: int
    act: str


def pack_stack(weights, names: list[tuple[str, str, str]], fp16: bool) -> list[ConvLayer]:
    """names: (conv prefix, bn prefix, activation) per layer."""
    act_dt = np.float16 if fp16 else np.float32
    out = []
    for conv, bn, act in names:
        w, b = fold_conv_bn(weights, conv, bn)
        k = np.asarray(weights[f"{conv}.weight"]).shape[2]
        out.append(ConvLayer(np.ascontiguousarray(w.astype(act_dt)), b.astype(np.float32), w.shape[1] // k,
                             w.shape[0], k, act))
    return out


class ConvStackGpu:
    """Runs the layers over a ragged batch; the caller fills the first operand (`operand(0)`) and
    says where the last layer's output goes (another operand of K taps, or a plain matrix)."""

    def __init__(self, ctx: GpuContext, layers: list[ConvLayer], fp16: bool, extra_channels: tuple[int, ...] = ()):
        self.ctx, self.layers, self.fp16 = ctx, layers, fp16
        self.act_dtype = np.float16 if fp16 else np.float32
        self._dt = CUDA_R_16F if fp16 else CUDA_R_32F
        dims = [l.c_in for l in layers] + [l.c_out for l in layers] + list(extra_channels)
        self.vec = 8 if all(d % 8 == 0 for d in dims) else (2 if all(d % 2 == 0 for d in dims) else 1)
        defines = {"CV_VEC": self.vec}
        if fp16:
            defines["ACT_HALF"] = 1
        self.mod = ctx.compile(["encoder_conv.cu"], defines)
        self.w = [ctx.to_device(l.w) for l in layers]
        self.b = [ctx.to_device(l.b) for l in layers]
        self.ld = [_round8(l.k * l.c_in) for l in layers]
        self._rows = -1

    def buffers(self, rows: int):
        if rows > self._rows:
            self.x = [self.ctx.empty((rows, ld), self.act_dtype) for ld in self.ld]
            self.y = self.ctx.empty((rows, max(l.c_out for l in self.layers)), self.act_dtype)
            self._rows = rows
        return self.x

    def run(self, rows: int, off, n_items: int, last_out=None, last_ld: int = 0, last_k: int = 1,
            skip_last_epilogue: bool = False) -> None:
        """Layers 0..n-1 on the operands in `self.x` (x[0] filled by the caller). Layer i's epilogue
        writes x[i+1]; the last one writes `last_out` (ld, K taps), or nothing if skip_last_epilogue
        (the caller reads `self.y`)."""
        ctx = self.ctx
        ep = self.mod.kernel("cv_epilogue")
        n = len(self.layers)
        for i, l in enumerate(self.layers):
            kc = l.k * l.c_in
            ctx.blas.gemm_raw(True, False, l.c_out, rows, kc, self.w[i].ptr, self._dt, kc, self.x[i].ptr, self._dt,
                              self.ld[i], self.y.ptr, self._dt, l.c_out)
            if i < n - 1:
                launch(ctx, ep, blocks(rows * l.c_out // self.vec), 256, self.y, self.b[i], l.c_out, ACT[l.act],
                       off, n_items, rows, self.x[i + 1], self.ld[i + 1], self.layers[i + 1].k)
            elif not skip_last_epilogue:
                launch(ctx, ep, blocks(rows * l.c_out // self.vec), 256, self.y, self.b[i], l.c_out, ACT[l.act],
                       off, n_items, rows, last_out, last_ld, last_k)
