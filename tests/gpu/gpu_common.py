"""Helpers shared by the GPU stage tests: the context, fixture paths, error measures, random weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
# .fixtures/ is git-ignored and filled by tests/gpu/prepare_fixtures.py; it travels to GPU machines
# that lack ../shared
FIXTURES = Path(os.environ.get("TTS_DESKTOP_FIXTURES", REPO / ".fixtures" / "golden_small"))


def gpu_or_skip():
    from tts_desktop.engine.runtime import gpu_status

    ok, why = gpu_status()
    if not ok:
        pytest.skip(f"no usable GPU: {why}", allow_module_level=True)


def rel_l2(out: np.ndarray, ref: np.ndarray) -> float:
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert np.isfinite(out).all(), "non-finite values (an unwritten, NaN-poisoned element?)"
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def golden_small():
    """(golden arrays, waveglow weights, waveglow config dict, tacotron2 weights, tacotron2 config)."""
    if not (FIXTURES / "golden.npz").exists():
        pytest.skip(f"{FIXTURES} is absent: run tests/gpu/prepare_fixtures.py where ../shared exists")
    load = lambda p: {k: v for k, v in np.load(p).items()}  # noqa: E731
    return (load(FIXTURES / "golden.npz"), load(FIXTURES / "waveglow.npz"),
            json.loads((FIXTURES / "waveglow_config.json").read_text()),
            load(FIXTURES / "tacotron2.npz"), json.loads((FIXTURES / "tacotron2_config.json").read_text()))


def random_waveglow_weights(cfg, rng: np.random.Generator, n_mel: int = 80) -> dict[str, np.ndarray]:
    """NVIDIA-named WaveGlow weights (weight norm folded) with scales that keep activations O(1)
    through all flows, like a trained model: small `end` convs, so exp(-log_s) stays near 1."""
    w: dict[str, np.ndarray] = {}
    f = lambda *s, std: (rng.standard_normal(s) * std).astype(np.float32)  # noqa: E731
    w["upsample.weight"] = f(n_mel, n_mel, 1024, std=0.05)
    w["upsample.bias"] = f(n_mel, std=0.1)
    c, K, L = cfg.wn_n_channels, cfg.wn_kernel_size, cfg.wn_n_layers
    n = cfg.n_group
    for k in range(cfg.n_flows):
        if k % cfg.n_early_every == 0 and k > 0:
            n -= cfg.n_early_size
        nh = n // 2
        q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        w[f"convinv.{k}.conv.weight"] = q[:, :, None].astype(np.float32)
        p = f"WN.{k}."
        w[p + "start.weight"] = f(c, nh, 1, std=1 / np.sqrt(nh))
        w[p + "start.bias"] = f(c, std=0.1)
        w[p + "end.weight"] = f(2 * nh, c, 1, std=0.2 / np.sqrt(c))
        w[p + "end.bias"] = f(2 * nh, std=0.05)
        for i in range(L):
            w[f"{p}in_layers.{i}.weight"] = f(2 * c, c, K, std=1 / np.sqrt(c * K))
            w[f"{p}in_layers.{i}.bias"] = f(2 * c, std=0.1)
            w[f"{p}cond_layers.{i}.weight"] = f(2 * c, n_mel * cfg.n_group, 1, std=1 / np.sqrt(n_mel * cfg.n_group))
            w[f"{p}cond_layers.{i}.bias"] = f(2 * c, std=0.1)
            rs = 2 * c if i < L - 1 else c
            w[f"{p}res_skip_layers.{i}.weight"] = f(rs, c, 1, std=1 / np.sqrt(c))
            w[f"{p}res_skip_layers.{i}.bias"] = f(rs, std=0.1)
    return w


def random_tacotron2_weights(cfg, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The encoder and postnet weights of a Tacotron2 (NVIDIA names), BatchNorm statistics random."""
    w: dict[str, np.ndarray] = {}
    f = lambda *s, std: (rng.standard_normal(s) * std).astype(np.float32)  # noqa: E731

    def conv_bn(prefix_conv, prefix_bn, c_in, c_out, k):
        w[prefix_conv + ".weight"] = f(c_out, c_in, k, std=1 / np.sqrt(c_in * k))
        w[prefix_conv + ".bias"] = f(c_out, std=0.1)
        w[prefix_bn + ".weight"] = (1 + f(c_out, std=0.1)).astype(np.float32)
        w[prefix_bn + ".bias"] = f(c_out, std=0.1)
        w[prefix_bn + ".running_mean"] = f(c_out, std=0.1)
        w[prefix_bn + ".running_var"] = (0.5 + rng.random(c_out)).astype(np.float32)

    e = cfg.encoder_embedding_dim
    w["embedding.weight"] = f(cfg.n_symbols, cfg.symbols_embedding_dim, std=0.5)
    for i in range(cfg.encoder_n_convolutions):
        conv_bn(f"encoder.convolutions.{i}.0.conv", f"encoder.convolutions.{i}.1", e, e, cfg.encoder_kernel_size)
    h = e // 2
    for sfx in ("_l0", "_l0_reverse"):
        w[f"encoder.lstm.weight_ih{sfx}"] = f(4 * h, e, std=1 / np.sqrt(e))
        w[f"encoder.lstm.weight_hh{sfx}"] = f(4 * h, h, std=1 / np.sqrt(h))
        w[f"encoder.lstm.bias_ih{sfx}"] = f(4 * h, std=0.1)
        w[f"encoder.lstm.bias_hh{sfx}"] = f(4 * h, std=0.1)
    n = cfg.postnet_n_convolutions
    dims = [cfg.n_mel_channels] + [cfg.postnet_embedding_dim] * (n - 1) + [cfg.n_mel_channels]
    for i in range(n):
        conv_bn(f"postnet.convolutions.{i}.0.conv", f"postnet.convolutions.{i}.1", dims[i], dims[i + 1],
                cfg.postnet_kernel_size)
    return w


def ragged_lengths(rng: np.random.Generator, batch: int, lo: int, hi: int) -> list[int]:
    """Lengths in [lo, hi] with the maximum always present (so the padded width is hi)."""
    n = rng.integers(lo, hi + 1, size=batch)
    n[rng.integers(batch)] = hi
    return [int(x) for x in n]
