"""A voice with random weights at any dimensions: NVIDIA's full ones by default.

The benchmark uses it so the GPU engine can be timed at the published model's size without a
trained checkpoint (the reference tables force the decoder length for the same reason), and tests
use it for fresh random inputs at reduced sizes. Scales follow each layer's fan-in so activations
stay in a realistic range: saturated tanh/sigmoid or exploding WaveGlow flows would time and test
unrealistic paths.
"""

from __future__ import annotations

import numpy as np

from tts_desktop.model.config import Tacotron2Config, VoiceConfig, WaveGlowConfig
from tts_desktop.model.voice_files import tacotron2_shapes, waveglow_shapes
from tts_desktop.text.symbols import SYMBOLS


def _init(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith("running_var"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if name.endswith(".1.weight") and len(shape) == 1:  # BatchNorm scale
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    if "convinv" in name:  # invertible 1x1 conv: a random rotation, as NVIDIA initialises it
        q, _ = np.linalg.qr(rng.standard_normal(shape[:2]))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        return q[:, :, None].astype(np.float32)
    if len(shape) == 1:
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    scale = 1.0 / np.sqrt(fan_in)
    if ".end." in name:  # keeps log-scales small so the inverse flows neither vanish nor explode
        scale *= 0.1
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def random_voice(tacotron2: Tacotron2Config | None = None, waveglow: WaveGlowConfig | None = None,
                 seed: int = 0) -> tuple[VoiceConfig, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(config, Tacotron2 weights, WaveGlow weights); defaults are NVIDIA's full dimensions
    (WaveGlow with 256 channels, as in NVIDIA's published LJSpeech model)."""
    rng = np.random.default_rng(seed)
    tacotron2 = tacotron2 or Tacotron2Config()
    waveglow = waveglow or WaveGlowConfig()
    config = VoiceConfig(name="random", tacotron2=tacotron2, waveglow=waveglow, symbols=SYMBOLS,
                         provenance={"random_weights": {"seed": seed}})
    tw = {k: _init(k, s, rng) for k, s in tacotron2_shapes(tacotron2).items()}
    ww = {k: _init(k, s, rng) for k, s in waveglow_shapes(waveglow).items()}
    return config, tw, ww
