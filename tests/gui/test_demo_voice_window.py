"""The window as a fresh install opens it: on the bundled demo voice, speaking with its own stop token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.bundled_voice, pytest.mark.slow]

DEMO = Path(__file__).resolve().parents[2] / "resources" / "voices" / "demo"


def test_window_opens_on_the_demo_voice_and_its_stop_token_ends_each_sentence(make_window, qtbot):
    w = make_window()  # no voice in the settings: the default one
    assert w.voice_info.name == "demo" and w.voice_info.path == DEMO
    assert w.voice_combo.currentText() == "demo (bundled)"
    w.options.seed.setValue(0)
    w.editor.setPlainText("Hello there. The demo voice speaks")  # the second gets a period to stop on
    with qtbot.waitSignal(w.utteranceFinished, timeout=120000):
        w.speak()
    qtbot.waitUntil(lambda: not w.busy, timeout=5000)
    assert "never reached its stop token" not in w.status.currentMessage()
    assert len(w._pieces) == 2 and all(np.abs(p).max() > 0.05 for p in w._pieces)
    frames = int(w.stats.text("frames"))
    assert 100 < frames < 400, frames  # espeak-ng would take ~165 frames for these 34 characters
    assert w.alignment_plot.total_steps == frames
