"""NumPy reference of NVIDIA's WaveGlow inference (the reverse flow, mel -> audio).

It follows `WaveGlow.infer` of DeepLearningExamples step by step, so the GPU engine has a plain,
readable oracle to compare with:

    mel (B, 80, T) --upsample (ConvTranspose1d k=1024, s=256), keep T*256 samples-->
    group 8 samples per step: cond (B, 80*8, L), L = T*256/8
    z ~ N(0, sigma^2) of n_remaining channels
    for each flow k, last first:
        WN_k(first half) -> (b, log_s);  second half = (second half - b) / exp(log_s)
        inverse 1x1 conv
        every n_early_every flows: put n_early_size fresh noise channels back in front
    ungroup -> audio (B, T*256)

Weights are the flat float32 state dict of `importer.load_waveglow` (NVIDIA's key names, weight
norm folded). Everything runs as matrix products over whole sequences; the only Python loops are
over flows, WN layers and chunks of the upsampler (so that Stop is heard within one).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy.special import expit

from tts_desktop.cancel import CancelCheck
from tts_desktop.cancel import check as check_cancel
from tts_desktop.model.config import WaveGlowConfig

# NVIDIA hard-codes the upsampler: ConvTranspose1d(80, 80, 1024, stride=256).
UPSAMPLE_KERNEL = 1024
UPSAMPLE_STRIDE = 256
# Mel frames upsampled at a time (WaveGlow.conditioning): a long sentence's whole upsampler is
# seconds of CPU work, too long for Stop to wait on; a chunk is tens of ms and a few MB.
COND_CHUNK = 256


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _col(bias) -> np.ndarray:
    """A bias as a column, so it broadcasts over (B, C, L)."""
    return _f32(bias)[:, None]


def stack_upsample_weight(weight: np.ndarray) -> np.ndarray:
    """ConvTranspose1d weight (C_in, C_out, K) -> (K/256 * C_in, C_out * 256): row m*C_in + i holds
    weight[i, :, m*256:(m+1)*256], what frame j - m adds to output block j (see upsample)."""
    c_in, c_out, k = weight.shape
    s = UPSAMPLE_STRIDE
    assert k % s == 0, "the block overlap-add needs a kernel that is a multiple of the stride"
    return np.ascontiguousarray(_f32(weight).reshape(c_in, c_out, k // s, s).transpose(2, 0, 1, 3)
                                .reshape(k // s * c_in, c_out * s))


def upsample(mel: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ConvTranspose1d(stride=256) of mel (B, C_in, T) with weight (C_in, C_out, K), cut to T*256.

    Frame t writes weight-shaped output at samples [t*256, t*256 + K). With K = 4*256 that is four
    256-sample blocks, so output block j is the sum over m of block m of frame j - m: one matmul of
    frames j, j-1, j-2, j-3 side by side (zeros before frame 0) with the four weight blocks stacked.
    NVIDIA then drops the last K - 256 samples ("time_cutoff"), which leaves exactly T*256 samples;
    those depend only on frames 0..T-1, so zero-padding extra frames never changes them.
    """
    return upsample_stacked(mel, stack_upsample_weight(weight), bias)


def upsample_stacked(mel: np.ndarray, w_stack: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """upsample with its weight already stacked (stack_upsample_weight): WaveGlow stacks it once
    rather than per chunk (a 6.5 M-element transpose, ~10 ms)."""
    b, c_in, t = mel.shape
    taps, c_out = w_stack.shape[0] // c_in, len(bias)
    s = w_stack.shape[1] // c_out
    frames = np.zeros((b, taps - 1 + t, c_in), np.float32)   # frame j at row taps - 1 + j
    frames[:, taps - 1:] = mel.transpose(0, 2, 1)
    x = np.concatenate([frames[:, taps - 1 - m:taps - 1 - m + t] for m in range(taps)], axis=2)
    out = (x @ w_stack).reshape(b, t, c_out, s).transpose(0, 2, 1, 3)
    out += _f32(bias)[None, :, None, None]
    return out.reshape(b, c_out, t * s)


def group_cond(spect: np.ndarray, n_group: int) -> np.ndarray:
    """(B, C, N) -> (B, C*n_group, N/n_group): channel c*n_group + g holds sample l*n_group + g."""
    b, c, n = spect.shape
    return np.ascontiguousarray(
        spect.reshape(b, c, n // n_group, n_group).transpose(0, 1, 3, 2).reshape(b, c * n_group, n // n_group)
    )


def dilated_conv(x: np.ndarray, taps: Sequence[np.ndarray], dilation: int) -> np.ndarray:
    """'Same' Conv1d (zero padding) as one matmul per kernel tap on shifted views of the input.

    taps[j] is the (C_out, C_in) weight slice for tap j (from `_split_taps`). Shifted views cost
    no copy, unlike stacking them for a single im2col matmul, which measured slower here.
    """
    b, c, n = x.shape
    pad = dilation * (len(taps) - 1) // 2
    xp = np.zeros((b, c, n + 2 * pad), dtype=x.dtype)
    xp[:, :, pad:pad + n] = x
    out = taps[0] @ xp[:, :, :n]
    for j in range(1, len(taps)):
        out += taps[j] @ xp[:, :, j * dilation:j * dilation + n]
    return out


def _split_taps(w: np.ndarray) -> list[np.ndarray]:
    """Conv weight (C_out, C_in, K) -> K contiguous (C_out, C_in) matrices."""
    return [_f32(w[:, :, j]) for j in range(w.shape[2])]


class WN:
    """The WaveNet-like network of one affine coupling: (half audio, cond) -> (b, log_s) stacked."""

    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, config: WaveGlowConfig):
        self.n_layers = config.wn_n_layers
        self.n_channels = config.wn_n_channels
        w = lambda name: weights[prefix + name]  # noqa: E731
        self.start_w, self.start_b = _f32(w("start.weight")[:, :, 0]), _col(w("start.bias"))
        self.end_w, self.end_b = _f32(w("end.weight")[:, :, 0]), _col(w("end.bias"))
        self.in_taps = [_split_taps(w(f"in_layers.{i}.weight")) for i in range(self.n_layers)]
        # in_layer and cond_layer outputs are summed before the gate, so one bias does for both
        self.gate_b = [_col(w(f"in_layers.{i}.bias") + w(f"cond_layers.{i}.bias")) for i in range(self.n_layers)]
        self.cond_w = [_f32(w(f"cond_layers.{i}.weight")[:, :, 0]) for i in range(self.n_layers)]
        self.res_skip_w = [_f32(w(f"res_skip_layers.{i}.weight")[:, :, 0]) for i in range(self.n_layers)]
        self.res_skip_b = [_col(w(f"res_skip_layers.{i}.bias")) for i in range(self.n_layers)]

    def __call__(self, audio: np.ndarray, cond: np.ndarray, mask: np.ndarray | None,
                 cancel: CancelCheck | None = None) -> np.ndarray:
        nc = self.n_channels
        h = self.start_w @ audio + self.start_b
        skip = None
        for i in range(self.n_layers):
            # a layer of NVIDIA's 256-channel WN is ~54 GFLOP per 1,000 frames: most of a second
            # on two CPU cores, so Stop is checked per layer rather than per flow
            check_cancel(cancel)
            if mask is not None:
                # batch of unequal lengths: the dilated conv must see zeros past each item's end,
                # exactly as it would running alone
                h *= mask
            act = dilated_conv(h, self.in_taps[i], 2**i)
            act += self.cond_w[i] @ cond
            act += self.gate_b[i]
            gated = np.tanh(act[:, :nc])
            gated *= expit(act[:, nc:])
            res_skip = self.res_skip_w[i] @ gated + self.res_skip_b[i]
            if i < self.n_layers - 1:
                h = h + res_skip[:, :nc]
                res_skip = res_skip[:, nc:]
            skip = res_skip if skip is None else skip + res_skip
        return self.end_w @ skip + self.end_b


class WaveGlow:
    def __init__(self, config: WaveGlowConfig, weights: Mapping[str, np.ndarray]):
        self.config = config
        self.upsample_w = _f32(weights["upsample.weight"])
        self.upsample_stack = stack_upsample_weight(self.upsample_w)
        self.upsample_b = _f32(weights["upsample.bias"])
        self.wn = [WN(weights, f"WN.{k}.", config) for k in range(config.n_flows)]
        # NVIDIA inverts W in float32 on first use; float64 here is the more exact of the two
        self.w_inverse = [
            _f32(np.linalg.inv(np.asarray(weights[f"convinv.{k}.conv.weight"], np.float64)[:, :, 0]))
            for k in range(config.n_flows)
        ]
        n_early = sum(1 for k in range(1, config.n_flows) if k % config.n_early_every == 0)
        self.n_remaining_channels = config.n_group - n_early * config.n_early_size

    def conditioning(self, mel: np.ndarray, cancel: CancelCheck | None = None) -> np.ndarray:
        """group_cond(upsample(mel)), COND_CHUNK frames at a time with `cancel` checked before each:
        a chunk upsamples from the 3 frames before it (the kernel's reach back) and keeps its own."""
        b, c, t = mel.shape
        reach = UPSAMPLE_KERNEL // UPSAMPLE_STRIDE - 1
        step_len = UPSAMPLE_STRIDE // self.config.n_group     # group steps per mel frame
        cond = np.empty((b, c * self.config.n_group, t * step_len), np.float32)
        for a in range(0, t, COND_CHUNK):
            check_cancel(cancel)
            e, lo = min(a + COND_CHUNK, t), max(a - reach, 0)
            spect = upsample_stacked(mel[:, :, lo:e], self.upsample_stack,
                                     self.upsample_b)[:, :, (a - lo) * UPSAMPLE_STRIDE:]
            cond[:, :, a * step_len:e * step_len] = group_cond(spect, self.config.n_group)
        return cond

    def noise_shape(self, batch: int, mel_frames: int) -> tuple[int, int, int]:
        """Shape of `z` for `infer`: (B, n_group, T*256/n_group)."""
        return batch, self.config.n_group, mel_frames * UPSAMPLE_STRIDE // self.config.n_group

    def infer(
        self,
        mel: np.ndarray,
        sigma: float = 0.6,
        rng: np.random.Generator | None = None,
        z: np.ndarray | None = None,
        lengths: Sequence[int] | None = None,
        cancel: CancelCheck | None = None,
    ) -> np.ndarray:
        """mel (B, n_mel, T) float32 -> audio (B, T*256) float32 in [-1, 1] scale.

        z: unit-variance noise of `noise_shape` (the audio starts as sigma * z). Channel order as
        NVIDIA's `infer_onnx`: the first n_remaining_channels start the reverse flow, then each
        n_early_size block is put back in the order the flows ask for it (unlike `infer_onnx`,
        the early blocks are scaled by sigma too, as `infer` does). Without z, noise is drawn
        from rng (a fresh default_rng() if None); sigma 0 needs no noise at all.
        lengths: valid mel frames per item when a batch is zero-padded to a common T. Each item's
        audio up to lengths[b]*256 then equals running it alone, and samples past it are zero.
        Without lengths, padding leaks into the end of shorter items, as in NVIDIA's batches.
        cancel: checked before every chunk of the upsampler and every WN layer; when it returns
        True, SynthesisCancelled is raised.
        """
        cfg = self.config
        mel = _f32(mel)
        b, _, t = mel.shape
        cond = self.conditioning(mel, cancel)
        n_steps = cond.shape[2]

        if z is None:
            if sigma == 0:
                z = np.zeros(self.noise_shape(b, t), dtype=np.float32)
            else:
                rng = rng if rng is not None else np.random.default_rng()
                z = rng.standard_normal(self.noise_shape(b, t), dtype=np.float32)
        z = _f32(z)
        if z.shape != self.noise_shape(b, t):
            raise ValueError(f"z has shape {z.shape}, expected {self.noise_shape(b, t)}")
        z = np.float32(sigma) * z

        mask = None
        if lengths is not None:
            steps = np.asarray(lengths) * UPSAMPLE_STRIDE // cfg.n_group
            mask = (np.arange(n_steps)[None, :] < steps[:, None]).astype(np.float32)[:, None, :]

        audio = z[:, : self.n_remaining_channels]
        next_early = self.n_remaining_channels
        for k in reversed(range(cfg.n_flows)):
            n_half = audio.shape[1] // 2
            out = self.wn[k](audio[:, :n_half], cond, mask, cancel)
            b_shift, log_s = out[:, :n_half], out[:, n_half:]
            audio_1 = (audio[:, n_half:] - b_shift) / np.exp(log_s)
            audio = self.w_inverse[k] @ np.concatenate([audio[:, :n_half], audio_1], axis=1)
            if k % cfg.n_early_every == 0 and k > 0:
                early = z[:, next_early:next_early + cfg.n_early_size]
                next_early += cfg.n_early_size
                audio = np.concatenate([early, audio], axis=1)

        audio = np.ascontiguousarray(audio.transpose(0, 2, 1)).reshape(b, -1)
        if mask is not None:
            audio *= np.repeat(mask[:, 0], cfg.n_group, axis=1)
        return audio
