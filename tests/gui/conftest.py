"""Fixtures for the window tests: offscreen Qt, a real small voice, temporary settings and voice folders."""

from __future__ import annotations

import os

# Before any QApplication exists: the tests run without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

NO_PLAYBACK = (False, "disabled for this test")


@pytest.fixture(scope="session")
def voices_root(tmp_path_factory) -> Path:
    """The user voice folder for the whole GUI test session (never ~/.local)."""
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(autouse=True)
def user_voices(voices_root, monkeypatch) -> Path:
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(voices_root))
    return voices_root


@pytest.fixture(scope="session")
def voice_dir(voices_root, golden_dir) -> Path:
    """One real voice imported from NVIDIA-layout checkpoints (random weights at reduced size:
    fast on two cores, and every stage of the real pipeline runs)."""
    from tts_desktop.model.importer import import_voice

    return import_voice(golden_dir / "tacotron2_dle.pt", golden_dir / "waveglow_dle.pt",
                        voices_root / "golden-small", name="golden-small")


@pytest.fixture
def settings_file(tmp_path) -> Path:
    return tmp_path / "settings.ini"


@pytest.fixture
def make_window(qtbot, settings_file, voice_dir):
    """Build a MainWindow on temporary settings; waits for its voice unless told not to."""
    from PySide6.QtCore import QSettings

    from tts_desktop.gui.main_window import MainWindow

    windows = []

    def make(wait=True, playback=NO_PLAYBACK, settings=None, **kw):
        qs = QSettings(str(settings or settings_file), QSettings.Format.IniFormat)
        w = MainWindow(settings=qs, playback=playback, **kw)
        qtbot.addWidget(w)
        w.show()
        windows.append(w)
        if wait:
            qtbot.waitUntil(lambda: w.voice_info is not None or bool(w.last_error), timeout=60000)
            assert w.voice_info is not None, w.last_error
        return w

    yield make
    for w in windows:
        w.close()     # saves settings and joins the worker thread


def short_frames(window, frames: int = 24) -> None:
    """The test voice has random weights, so its stop token fires at once: decode a fixed number
    of frames instead, through the Advanced panel like a user would."""
    window.options.max_frames.setValue(frames)
    window.options.early_stop.setChecked(False)
    window.options.seed.setValue(7)
    window.options.denoise.setValue(0.01)
