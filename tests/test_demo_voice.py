"""The bundled demo voice (resources/voices/demo, trained by tts_desktop.train: docs/training.md).

Its quality is measured by the benchmarks of docs/training (Whisper word error rate, stop token
against espeak-ng's durations on 50 sentences); these tests check, on two CPU cores, what a fresh
install relies on: it is the default voice, it fits the size budget, its JSON says how it was made,
and it speaks: the stop token fires near espeak-ng's length, the attention walks the whole text in
order, and the audio has speech's loudness.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tts_desktop.api import SynthesisOptions, Voice
from tts_desktop.model.config import Tacotron2Config
from tts_desktop.model.voice_files import load_voice
from tts_desktop.voices import find_voice

pytestmark = pytest.mark.bundled_voice  # tests/conftest.py hides the bundled voices from the others

DEMO = Path(__file__).resolve().parents[1] / "resources" / "voices" / "demo"
# espeak-ng at 165 words per minute: 4.85 mel frames per character of the transcript (median of
# the 100 validation sentences; 5-95 %: 4.34-5.45)
ESPEAK_FRAMES_PER_CHAR = 4.85


def test_demo_voice_is_the_default_voice(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path))
    assert find_voice(None) == DEMO
    # a user voice that sorts first does not displace it
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "voice.json").write_text((DEMO / "voice.json").read_text())
    assert find_voice(None) == DEMO


def test_demo_voice_fits_the_budget_and_says_how_it_was_made():
    assert sum(f.stat().st_size for f in DEMO.iterdir()) <= 120e6
    meta = json.loads((DEMO / "voice.json").read_text())
    assert meta["name"] == "demo" and meta["weights_dtype"] == "float16"
    p = meta["provenance"]
    assert "espeak-ng" in p["corpus"] and p["corpus_details"]["utterances"]["train"] == 12500
    for model in ("tacotron2", "waveglow"):
        runs = p["training_runs"][model]
        assert runs[0]["steps"][0] == 0 and runs[-1]["steps"][1] == p[model]["step"]
        assert all(a["steps"][1] == b["steps"][0] for a, b in zip(runs, runs[1:]))  # no gap
    config, t2, wg = load_voice(DEMO)
    assert config.tacotron2 == Tacotron2Config()  # NVIDIA's full dimensions
    assert (config.waveglow.n_mel_channels, config.waveglow.n_group) == (80, 8)
    assert p["parameters"] == {"tacotron2": sum(w.size for w in t2.values()),
                               "waveglow": sum(w.size for w in wg.values())}


@pytest.mark.slow
def test_demo_voice_speaks_on_the_cpu():
    voice = Voice.load(device="cpu")  # the default voice
    text = "The demo voice speaks on the processor."
    result = voice.synthesize(text, SynthesisOptions(seed=0))
    (s,) = result.sentences
    assert not s.reached_max_steps
    expected = ESPEAK_FRAMES_PER_CHAR * len(text)
    assert 0.7 * expected <= s.frames <= 1.3 * expected, (s.frames, expected)
    # the attention's peak moves through the text in order (it may flick back now and then, at
    # most a few times: 2 of ~175 steps at seeds 0-3) and ends in the last word
    peaks = s.alignment.argmax(axis=1)
    assert np.corrcoef(np.arange(len(peaks)), peaks)[0, 1] > 0.97
    assert np.mean(np.diff(peaks) < -3) < 0.03
    assert peaks[-1] >= len(s.ids) - 5 and peaks[:5].max() <= 3
    # speech's loudness, not a whisper or silence, and no clipping
    rms = float(np.sqrt(np.mean(result.audio ** 2)))
    assert 0.01 < rms < 0.5 and np.abs(result.audio).max() < 1.0, rms
