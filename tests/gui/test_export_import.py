"""Batch export and voice import through their dialogs, end to end, plus starting the app."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from conftest import short_frames

FRAMES = 16


def _run_export(qtbot, w, phrases, out_dir, cancel_after=None):
    d = w.show_export_dialog()
    d.phrases.setText(str(phrases))
    d.out_dir.setText(str(out_dir))
    if cancel_after is not None:
        d.progress.valueChanged.connect(lambda v: d.cancel() if v >= cancel_after else None)
    with qtbot.waitSignal(w.exportEnded, timeout=120000) as blocker:
        d.start_button.click()
    return d, blocker.args[0]


def test_export_writes_numbered_wavs_and_reports_blank_and_failed_lines(make_window, qtbot, tmp_path):
    w = make_window()
    short_frames(w, FRAMES)
    phrases = tmp_path / "phrases.txt"
    # Line 3 is blank; line 4 has no speakable symbol (the text front-end rejects it).
    phrases.write_text("First phrase.\nSecond one!\n\n\u2603\u2603\nLast line\n", encoding="utf-8")
    out = tmp_path / "out"
    d, how = _run_export(qtbot, w, phrases, out)
    assert how == "finished"
    summary = d.summary.toPlainText()
    names = sorted(p.name for p in out.iterdir())
    written = [n for n in ("1.wav", "2.wav", "5.wav")]
    assert all(n in names for n in written) and "3.wav" not in names
    assert not [n for n in names if n.endswith(".part")]
    for n in written:
        data, sr = sf.read(str(out / n), dtype="float32")
        assert sr == w.voice_info.sample_rate and len(data) == FRAMES * 256 and np.abs(data).max() > 0
    assert "Blank lines (no file): 3" in summary
    if "4.wav" in names:     # the front-end may read the snowmen as something sayable
        assert summary.startswith("wrote 4 file(s)")
    else:
        assert "Line 4 FAILED:" in summary and summary.startswith("wrote 3 file(s)")
    assert d.progress.value() == d.progress.maximum() == 5
    assert d.start_button.isEnabled() and not d.cancel_button.isEnabled()
    assert w.speak_button.isEnabled()


def test_export_cancel_leaves_only_whole_files(make_window, qtbot, tmp_path):
    w = make_window()
    short_frames(w, FRAMES)
    phrases = tmp_path / "many.txt"
    phrases.write_text("\n".join(f"Phrase number {i}." for i in range(1, 21)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    d, how = _run_export(qtbot, w, phrases, out, cancel_after=2)
    assert how == "cancelled"
    files = sorted(out.iterdir())
    assert 2 <= len(files) < 20 and all(f.suffix == ".wav" for f in files)
    for f in files:
        data, _ = sf.read(str(f))
        assert len(data) == FRAMES * 256
    assert d.summary.toPlainText().startswith("Cancelled after")


def test_export_dialog_input_errors(make_window, tmp_path):
    w = make_window()
    d = w.show_export_dialog()
    d.start()
    assert d.summary.toPlainText() == "Choose a phrase file."
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa")
    d.phrases.setText(str(bad))
    d.out_dir.setText(str(tmp_path / "o"))
    d.start()
    assert "not UTF-8" in d.summary.toPlainText() and not d.running
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    d.phrases.setText(str(blank))
    d.start()
    assert "every line is blank" in d.summary.toPlainText()


def test_import_dialog_imports_and_loads_the_new_voice(make_window, qtbot, tmp_path, golden_dir, monkeypatch):
    w = make_window()
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path / "voices"))
    dialog = w.show_import_dialog()
    dialog.start()
    assert dialog.message.text() == "choose the Tacotron2 checkpoint file"
    dialog.tacotron2.setText(str(golden_dir / "tacotron2_dle.pt"))
    dialog.waveglow.setText(str(golden_dir / "waveglow_dle.pt"))
    dialog.name.setText("My Voice")
    assert dialog.out_dir() == tmp_path / "voices" / "My-Voice"
    with qtbot.waitSignal(dialog.imported, timeout=60000):
        dialog.import_button.click()
    assert (tmp_path / "voices" / "My-Voice" / "voice.json").is_file()
    assert dialog.progress.value() == 100
    qtbot.waitUntil(lambda: w.voice_info is not None and w.voice_info.name == "My Voice", timeout=60000)
    assert w.voice_combo.currentText() == "My Voice (user)"
    dialog.start()      # the same name again: refused, nothing overwritten
    assert "already exists" in dialog.message.text()


def test_import_dialog_reports_a_bad_checkpoint(make_window, qtbot, tmp_path, golden_dir, monkeypatch):
    w = make_window()
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path / "voices"))
    dialog = w.show_import_dialog()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    dialog.tacotron2.setText(str(junk))
    dialog.waveglow.setText(str(golden_dir / "waveglow_dle.pt"))
    dialog.name.setText("broken")
    dialog.import_button.click()
    qtbot.waitUntil(lambda: dialog.message.text().startswith("Import failed:"), timeout=30000)
    assert "junk.pt" in dialog.message.text()
    assert not (tmp_path / "voices" / "broken").exists()


def test_run_app_opens_the_window_and_returns_zero(qtbot, tmp_path, voice_dir):
    from tts_desktop.gui.app import run_app

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    seen = []

    def close():
        windows = [w for w in QApplication.topLevelWidgets() if w.windowTitle() == "TTS Desktop"]
        seen.extend(windows)
        QApplication.closeAllWindows()

    QTimer.singleShot(500, close)
    assert run_app(voice=str(voice_dir), device="cpu") == 0
    assert seen and seen[0].device() == "cpu"


def test_pyside_void_calls_cannot_drain_none():
    """PySide6 6.12.0 on CPython 3.11 drops a reference to None on every void call, and a child
    process like this one dies with 'none_dealloc' (pyproject.toml excludes that release)."""
    code = ("import tts_desktop.gui\nfrom PySide6.QtCore import QObject\no = QObject()\n"
            "for _ in range(300000):\n    o.setObjectName('x')\nprint('alive')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "alive", r.stderr[-500:]


def test_import_dialog_downloads_the_nvidia_voice(make_window, qtbot, tmp_path, server, monkeypatch):
    from tts_desktop.download import BASE_URL_ENV

    w = make_window()
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path / "voices"))
    monkeypatch.setenv(BASE_URL_ENV, server.url)
    dialog = w.show_import_dialog()
    with qtbot.waitSignal(dialog.imported, timeout=60000) as got:
        dialog.download_button.click()
    assert got.args == [str(tmp_path / "voices" / "nvidia-ljspeech")]
    assert (tmp_path / "voices" / "nvidia-ljspeech" / "voice.json").is_file()
    assert dialog.progress.value() == 100 and dialog.download_button.isEnabled()
    assert [status for _, _, status in server.log] == [200, 200]


def test_import_dialog_download_without_network_is_a_message(make_window, qtbot, tmp_path, monkeypatch):
    import socket

    from tts_desktop.download import BASE_URL_ENV

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = make_window()
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path / "voices"))
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{port}/files")
    dialog = w.show_import_dialog()
    dialog.download_button.click()
    qtbot.waitUntil(lambda: dialog.message.text().startswith("Download failed:"), timeout=30000)
    assert "cannot reach 127.0.0.1" in dialog.message.text()
    assert dialog.download_button.isEnabled() and not dialog.cancel_download_button.isEnabled()
    assert not (tmp_path / "voices" / "nvidia-ljspeech").exists()


def test_import_dialog_download_can_be_cancelled_and_resumed(make_window, qtbot, tmp_path, server, monkeypatch):
    import threading

    from tts_desktop.download import BASE_URL_ENV

    w = make_window()
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path / "voices"))
    monkeypatch.setenv(BASE_URL_ENV, server.url)
    server.stall = threading.Event()  # the first request hangs until cancelled
    dialog = w.show_import_dialog()
    dialog.download_button.click()
    qtbot.waitUntil(lambda: dialog.cancel_download_button.isEnabled(), timeout=5000)
    dialog.cancel_download_button.click()
    server.stall.set()
    qtbot.waitUntil(lambda: "cancelled" in dialog.message.text() or "failed" in dialog.message.text(),
                    timeout=30000)
    server.stall = None
    with qtbot.waitSignal(dialog.imported, timeout=60000):
        dialog.download_button.click()
    assert (tmp_path / "voices" / "nvidia-ljspeech" / "voice.json").is_file()
