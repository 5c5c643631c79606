"""Tacotron2 postnet on the GPU: mel (B, n_mel, T_pad) -> mel + postnet(mel), zero past each item's
frame count. 5 x (conv k5 + folded BatchNorm + tanh, none on the last) as cuBLAS GEMMs with fused
epilogues (tts_desktop/engine/conv1d.py); the residual add is fused into the output transpose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..model.config import Tacotron2Config
from .conv1d import ConvLayer, ConvStackGpu, pack_stack
from .runtime import DeviceArray, GpuContext
from .stage_util import blocks, launch


@dataclass
class PackedPostnet:
    config: Tacotron2Config
    fp16: bool
    convs: list[ConvLayer]

    @classmethod
    def from_weights(cls, config: Tacotron2Config, weights: Mapping[str, np.ndarray], fp16: bool = True):
        n = config.postnet_n_convolutions
        names = [(f"postnet.convolutions.{i}.0.conv", f"postnet.convolutions.{i}.1", "tanh" if i < n - 1 else "none")
                 for i in range(n)]
        return cls(config, fp16, pack_stack(weights, names, fp16))


class PostnetGpu:
    def __init__(self, ctx: GpuContext, packed: PackedPostnet):
        self.ctx, self.packed = ctx, packed
        self.convs = ConvStackGpu(ctx, packed.convs, packed.fp16)
        self.n_mel = packed.convs[0].c_in

    def run(self, mel: DeviceArray, n_frames: Sequence[int], out: DeviceArray | None = None) -> DeviceArray:
        """mel (B, n_mel, T_pad) float32 on the device, n_frames (B,) -> (B, n_mel, T_pad) float32."""
        ctx = self.ctx
        bsz, n_mel, t_pad = mel.shape
        n_frames = [int(n) for n in n_frames]
        if n_mel != self.n_mel or len(n_frames) != bsz or min(n_frames) < 1 or max(n_frames) > t_pad:
            raise ValueError(f"mel {mel.shape} / n_frames {n_frames} do not fit this postnet")
        rows = sum(n_frames)
        off = ctx.to_device(np.concatenate([[0], np.cumsum(n_frames)]).astype(np.int32))
        x = self.convs.buffers(rows)
        mod = self.convs.mod
        launch(ctx, mod.kernel("cv_mel_cols"), blocks(rows * n_mel // self.convs.vec), 256, mel, t_pad, n_mel, off,
               bsz, rows, x[0], self.convs.ld[0], self.packed.convs[0].k)
        self.convs.run(rows, off, bsz, skip_last_epilogue=True)
        if out is None:
            out = ctx.empty(mel.shape, np.float32)
        out.zero()
        launch(ctx, mod.kernel("cv_postnet_out"), blocks(rows * n_mel), 256, self.convs.y, self.convs.b[-1], mel, out,
               t_pad, n_mel, off, bsz, rows)
        self._off = off
        return out
