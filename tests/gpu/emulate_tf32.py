"""What error should the FP32 engine with TF32 GEMMs show? An emulation on the CPU, no GPU needed:

    python tests/gpu/emulate_tf32.py [full] [pipeline] [cond] [golden]

Runs the NumPy reference WaveGlow (tts_desktop/model/waveglow.py) twice: as it is, and with the
operands of exactly the GEMMs the TF32 engine runs on TF32 tensor cores rounded to TF32 (the
upsample, each layer's in_layer + cond_layer, the res half of res_skip; not the start conv, the
skip/end product, the coupling or the inverse 1x1 conv, which are float32 kernels in the engine).
TF32 keeps 10 mantissa bits; whether the tensor cores round to nearest or truncate the 13 low bits
of an FP32 operand is not documented for cuBLAS, so both are reported. The relative L2 errors
printed justify the bounds in test_waveglow_gpu.py and test_pipeline_gpu.py (docs/gpu-notes.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import random_waveglow_weights, rel_l2  # noqa: E402

import tts_desktop.model.waveglow as M  # noqa: E402
from tts_desktop.model.config import WaveGlowConfig  # noqa: E402


def tf32_truncate(x) -> np.ndarray:
    a = np.array(x, np.float32)
    a.view(np.uint32)[...] &= np.uint32(0xFFFFE000)
    return a


def tf32_round(x) -> np.ndarray:
    """Round to nearest, ties to even, at 10 mantissa bits."""
    a = np.array(x, np.float32)
    u = a.view(np.uint32)
    u[...] = (u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return a


def _wn_tf32(q):
    """WN.__call__ with the engine's TF32 GEMM operands passed through q."""

    def call(self, audio, cond, mask):
        nc = self.n_channels
        h = self.start_w @ audio + self.start_b
        skip = None
        cq = q(cond)
        for i in range(self.n_layers):
            if mask is not None:
                h *= mask
            act = M.dilated_conv(q(h), [q(t) for t in self.in_taps[i]], 2**i)
            act += q(self.cond_w[i]) @ cq
            act += self.gate_b[i]
            gated = np.tanh(act[:, :nc])
            gated *= M.expit(act[:, nc:])
            if i < self.n_layers - 1:
                h = h + q(self.res_skip_w[i][:nc]) @ q(gated) + self.res_skip_b[i][:nc]
                sk = self.res_skip_w[i][nc:] @ gated + self.res_skip_b[i][nc:]
            else:
                sk = self.res_skip_w[i] @ gated + self.res_skip_b[i]
            skip = sk if skip is None else skip + sk
        return self.end_w @ skip + self.end_b

    return call


def tf32_errors(cfg: WaveGlowConfig, weights, mel, z, sigma: float, lengths=None) -> dict[str, float]:
    """{'round': err, 'truncate': err}: relative L2 of the TF32-emulated audio vs the reference."""
    ref = M.WaveGlow(cfg, weights).infer(mel, sigma=sigma, z=z, lengths=lengths)
    out = {}
    orig_up, orig_call = M.upsample, M.WN.__call__
    for name, q in (("round", tf32_round), ("truncate", tf32_truncate)):
        try:
            M.upsample = lambda m, w, b, q=q: orig_up(q(m), q(w), b)
            M.WN.__call__ = _wn_tf32(q)
            got = M.WaveGlow(cfg, weights).infer(mel, sigma=sigma, z=z, lengths=lengths)
        finally:
            M.upsample, M.WN.__call__ = orig_up, orig_call
        out[name] = rel_l2(got, ref)
    return out


def _fmt(e: dict[str, float]) -> str:
    return f"round {e['round']:.2e}, truncate {e['truncate']:.2e}"


def full_model() -> None:
    """test_waveglow_gpu.py's `full` fixture: NVIDIA's shape, random weights, given z."""
    cfg = WaveGlowConfig()
    w = random_waveglow_weights(cfg, np.random.default_rng(1))
    for lengths in ([12], [5, 7, 3]):
        rng = np.random.default_rng(len(lengths))
        mel = rng.standard_normal((len(lengths), 80, max(lengths))).astype(np.float32)
        z = rng.standard_normal((len(lengths), cfg.n_group, max(lengths) * 256 // cfg.n_group)).astype(np.float32)
        print(f"full WaveGlow {lengths}, sigma 0.6: {_fmt(tf32_errors(cfg, w, mel, z, 0.6, lengths))}", flush=True)
        print(f"full WaveGlow {lengths}, sigma 0:   {_fmt(tf32_errors(cfg, w, mel, 0 * z, 0.0, lengths))}", flush=True)


def pipeline_voices() -> None:
    """test_pipeline_gpu.py's voices and inputs: the CPU backend's mel, then WaveGlow at sigma 0."""
    from tts_desktop.api import SynthesisOptions
    from tts_desktop.backends import CpuBackend
    from tts_desktop.model.config import Tacotron2Config
    from tts_desktop.model.random_voice import random_voice

    red_t2 = Tacotron2Config(symbols_embedding_dim=128, encoder_embedding_dim=128, attention_rnn_dim=64,
                             attention_dim=32, attention_location_n_filters=8, attention_location_kernel_size=7,
                             decoder_rnn_dim=96, prenet_dim=32, postnet_embedding_dim=64, max_decoder_steps=40)
    red_wg = WaveGlowConfig(n_flows=6, wn_n_layers=3, wn_n_channels=64)
    for name, (config, tw, ww), lens, steps in (
            ("reduced", random_voice(red_t2, red_wg, seed=4), [37, 12, 61], 40),
            ("full", random_voice(seed=0), [128, 40], 24)):
        rng = np.random.default_rng(1)
        batch = [rng.integers(1, 148, n).tolist() for n in lens]
        opts = SynthesisOptions(max_decoder_steps=steps, early_stop=False, prenet_dropout=False, sigma=0.0,
                                denoise=0.0)
        for i, r in enumerate(CpuBackend(config, tw, ww).synthesize_ids(batch, opts, seed=5)):
            g = config.waveglow
            z = np.zeros((1, g.n_group, r.mel.shape[1] * 256 // g.n_group), np.float32)
            print(f"pipeline {name} item {i}: {_fmt(tf32_errors(g, ww, r.mel[None], z, 0.0))}", flush=True)


def cond_columns() -> None:
    """test_*cond_columns*: the upsample alone (one GEMM, K = 4 x 80 + 1)."""
    cfg = WaveGlowConfig()
    w = random_waveglow_weights(cfg, np.random.default_rng(1))
    mel = np.random.default_rng(2).standard_normal((1, 80, 7)).astype(np.float32)
    ref = M.upsample(mel, w["upsample.weight"], w["upsample.bias"])
    e = {name: rel_l2(M.upsample(q(mel), q(w["upsample.weight"]), w["upsample.bias"]), ref)
         for name, q in (("round", tf32_round), ("truncate", tf32_truncate))}
    print(f"cond columns (upsample GEMM): {_fmt(e)}", flush=True)


def golden() -> None:
    from gpu_common import golden_small

    g, w, cfg_d, _, _ = golden_small()
    cfg = WaveGlowConfig.from_dict(cfg_d)
    mel = g["mel_postnet"].astype(np.float32)
    z = np.zeros((1, cfg.n_group, mel.shape[2] * 256 // cfg.n_group), np.float32)
    print(f"golden small WaveGlow, sigma 0: {_fmt(tf32_errors(cfg, w, mel, z, 0.0))}", flush=True)


if __name__ == "__main__":
    todo = sys.argv[1:] or ["full", "pipeline", "cond", "golden"]
    for what in todo:
        {"full": full_model, "pipeline": pipeline_voices, "cond": cond_columns, "golden": golden}[what]()
