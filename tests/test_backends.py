"""tts_desktop.backends on the CPU: what a voice load prepares before the first Speak."""

from __future__ import annotations

import numpy as np

from tts_desktop.api import SynthesisOptions
from tts_desktop.backends import BackendBuild
from tts_desktop.model.importer import import_voice
from tts_desktop.model.voice_files import load_voice


def test_cpu_load_measures_the_denoiser_bias_before_the_first_speak(golden_dir, tmp_path):
    """The denoiser's bias needs one WaveGlow run (1.2 s for the demo voice on two cores): the
    loading thread does it, so the first Speak does not."""
    voice = import_voice(golden_dir / "tacotron2_dle.pt", golden_dir / "waveglow_dle.pt", tmp_path / "v")
    steps = []
    build = BackendBuild("cpu")
    build.run(voice, *load_voice(voice), progress=lambda f, m: steps.append(m))
    backend = build.finish()
    assert backend._denoiser is not None and "denoiser" in steps[-1]
    bias = backend.denoiser.bias_spec.copy()
    opts = SynthesisOptions(max_decoder_steps=8, early_stop=False, prenet_dropout=False, sigma=0.0)
    (result,) = backend.synthesize_ids([[5, 6, 7]], opts, seed=1)
    assert len(result.audio) == 8 * 256 and np.array_equal(backend.denoiser.bias_spec, bias)  # measured once
