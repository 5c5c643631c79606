"""The real window with a real (small, CPU) voice: speaking, stopping, device switches, saving."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from conftest import short_frames

FRAMES = 24
HOP = 256


def _speak_and_wait(qtbot, w, timeout=60000):
    with qtbot.waitSignal(w.utteranceFinished, timeout=timeout):
        w.speak()
    qtbot.waitUntil(lambda: not w.busy, timeout=5000)


def test_title_counts_and_ctrl_enter_speak_fill_plots_stats_and_audio(make_window, qtbot):
    w = make_window()
    assert w.windowTitle() == "TTS Desktop"
    short_frames(w, FRAMES)
    w.editor.setPlainText("One two. Three four five! Six?")
    qtbot.waitUntil(lambda: w.counts.text() == "30 characters · 3 sentences", timeout=3000)

    growth = []   # plots as each sentence arrives: they grow while the rest is synthesized
    w.sentenceShown.connect(lambda n: growth.append(
        (n, len(w.mel_plot.images), len(w.alignment_plot.blocks))))
    w.activateWindow()
    qtbot.waitActive(w)
    with qtbot.waitSignal(w.utteranceFinished, timeout=60000):
        qtbot.keyClick(w.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert not w.busy
    assert growth == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]

    sr = w.voice_info.sample_rate
    pieces = w._pieces
    assert len(pieces) == 3 and all(len(p) == FRAMES * HOP for p in pieces)
    expected = sum(len(p) for p in pieces) + 2 * round(0.2 * sr)
    assert len(w.current_audio()) == expected == w.player.buffer.length
    assert w.player.duration() == pytest.approx(expected / sr)
    assert np.abs(w.current_audio()).max() > 0

    # Mel images sit on the audio timeline: sentence 2 starts after sentence 1 and its pause.
    second = w.mel_plot.images[1].mapRectToParent(w.mel_plot.images[1].boundingRect())
    assert second.left() == pytest.approx((FRAMES * HOP + round(0.2 * sr)) / sr, abs=1e-6)
    assert w.alignment_plot.total_steps == 3 * FRAMES
    # Symbol labels name the model's input symbols at their rows ("one two." for sentence 1).
    ticks = w.alignment_plot.plot.getAxis("left")._tickLevels[0]
    assert ticks and len(ticks) <= w.alignment_plot.total_symbols
    rows = [sym for b in w.alignment_plot.blocks for sym in b.symbols]
    assert rows[:8] == list("one two.")
    assert all(label == rows[int(y)].replace(" ", "␣") for y, label in ticks)
    readout = w.alignment_plot.describe(5.5, 1.5)
    assert readout.startswith("sentence 1 · frame 5 · 0.06 s") and "symbol 1 'n'" in readout

    assert w.stats.text("sentences") == "3"
    assert w.stats.text("frames") == str(3 * FRAMES)
    assert w.stats.text("audio") == f"{expected / sr:.2f} s"
    for stage in ("encoder", "decoder", "postnet", "waveglow", "denoiser"):
        assert w.stats.text(f"stage:{stage}").endswith(" ms")
    assert w.stats.text("latency").endswith(" ms") and float(w.stats.text("rtf")) > 0
    assert len(w.history_plot.latency) == 1 and w.history_plot.rtf[0] > 0
    assert "Spoke 3 sentence(s)" in w.status.currentMessage()


def test_stop_mid_synthesis_takes_effect_at_once_and_drops_late_sentences(make_window, qtbot):
    w = make_window()
    short_frames(w, FRAMES)
    w.editor.setPlainText(" ".join(f"Sentence number {i}." for i in range(1, 16)))
    cancelled = []
    w.speakCancelAcknowledged.connect(lambda: cancelled.append(time.perf_counter()))
    w.speak()
    qtbot.waitUntil(lambda: len(w._pieces) >= 1, timeout=60000)
    qtbot.mouseClick(w.stop_button, Qt.MouseButton.LeftButton)
    t_stop = time.perf_counter()
    pieces_at_stop, buffer_at_stop = len(w._pieces), w.player.buffer.length
    assert not w.busy and not w.stop_button.isEnabled() and w.player.state == "stopped"
    assert w.status.currentMessage() == "Stopped"
    # The worker notices between decoder steps and WaveGlow chunks and layers: bounded, not instant.
    qtbot.waitUntil(lambda: bool(cancelled), timeout=10000)
    print(f"worker acknowledged Stop after {cancelled[0] - t_stop:.3f} s")
    qtbot.wait(200)
    assert len(w._pieces) == pieces_at_stop < 15 and w.player.buffer.length == buffer_at_stop


def test_stop_inside_the_decoder_within_100ms(make_window, qtbot, monkeypatch):
    w = make_window()
    short_frames(w, 2000)     # a long decode: Stop lands inside the decoder loop
    w.editor.setPlainText("This one sentence decodes for a long time.")
    # Count the reference decoder's steps (each still runs), so Stop comes once the decoder is
    # under way, not after a fixed wait: on a fast CPU 2,000 steps took under the 400 ms this test
    # used to wait, and Stop then landed in WaveGlow's upsampler.
    tacotron2 = w.client.worker.voice.backend.tacotron2
    step, steps = tacotron2._step, []
    monkeypatch.setattr(tacotron2, "_step", lambda *a, **k: steps.append(1) or step(*a, **k))
    done = []
    w.speakCancelAcknowledged.connect(lambda: done.append(time.perf_counter()))
    w.speak()
    qtbot.waitUntil(lambda: len(steps) >= 20, timeout=10000)
    t0 = time.perf_counter()
    w.stop()
    at_stop = len(steps)
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    latency = done[0] - t0
    print(f"decoder cancel latency {latency * 1000:.1f} ms, at step {at_stop}, {len(steps)} steps run")
    assert at_stop < 2000 and len(steps) < 2000     # Stop came, and was seen, inside the decoder
    assert latency < 0.25   # 100 ms is the target; a margin for two shared, busy cores


def test_new_speak_while_busy_supersedes_the_running_one(make_window, qtbot):
    w = make_window()
    short_frames(w, FRAMES)
    w.editor.setPlainText(" ".join(f"Old sentence {i}." for i in range(10)))
    w.speak()
    first = w.client.speaking
    qtbot.waitUntil(lambda: len(w._pieces) >= 1, timeout=60000)
    w.editor.setPlainText("New text. Two sentences.")
    _speak_and_wait(qtbot, w)
    assert first.cancel.is_set()
    assert len(w._pieces) == 2 and w.stats.text("sentences") == "2"


def test_gpu_and_precision_toggles_without_gpu_explain_and_keep_cpu_voice(make_window, qtbot):
    from tts_desktop.engine.runtime import gpu_status

    if gpu_status()[0]:
        pytest.skip("this machine has a usable GPU: the no-GPU messages cannot appear")
    w = make_window()
    assert w.voice_info.device == "cpu"
    served = w.voice_info
    gpu = w.device_combo.findData("cuda")
    w.device_combo.setCurrentIndex(gpu)
    w.device_combo.activated.emit(gpu)
    assert w.load_progress.isVisible()
    qtbot.waitUntil(lambda: bool(w.last_error), timeout=30000)
    assert w.last_error.startswith("The GPU engine cannot be used: no usable GPU")
    assert "keeps serving on CPU" in w.last_error
    assert w.device() == "auto" and w.voice_info is served and not w.load_progress.isVisible()
    assert w._error_box.isVisible() and w._error_box.text() == w.last_error

    w.last_error = ""
    fp32 = w.precision_combo.findData("fp32")
    w.precision_combo.setCurrentIndex(fp32)
    w.precision_combo.activated.emit(fp32)
    assert "FP32 applies to the GPU engine only" in w.last_error and "keeps serving" in w.last_error

    short_frames(w, 8)
    w.editor.setPlainText("Still speaking.")
    _speak_and_wait(qtbot, w)      # the CPU voice still serves
    assert len(w._pieces) == 1


def test_bad_voice_folder_is_a_message_and_the_window_keeps_working(make_window, qtbot, tmp_path, voice_dir):
    bad = tmp_path / "not-a-voice"
    bad.mkdir()
    w = make_window(wait=False, voice=str(bad))
    qtbot.waitUntil(lambda: bool(w.last_error), timeout=30000)
    assert "not a voice folder" in w.last_error and "No voice is loaded" in w.last_error
    w.speak()
    assert w.last_error.startswith("No voice is loaded")
    i = w.voice_combo.findData(str(voice_dir))
    w.voice_combo.setCurrentIndex(i)
    w.voice_combo.activated.emit(i)
    qtbot.waitUntil(lambda: w.voice_info is not None, timeout=30000)
    assert w.voice_info.name == "golden-small"


def test_text_files_open_save_drop_and_unreadable(make_window, qtbot, tmp_path):
    w = make_window()
    w.editor.setPlainText("keep me")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    assert not w.open_text_file(str(bad))
    assert "latin1.txt: it is not UTF-8 text (invalid byte 0xe9 at offset 3)" in w.last_error
    assert not w.open_text_file(str(tmp_path / "missing.txt"))
    assert "cannot open" in w.last_error and "No such file" in w.last_error
    assert w.editor.toPlainText() == "keep me"

    good = tmp_path / "good.txt"
    good.write_text("Grüße aus Köln. Zweiter Satz.", encoding="utf-8")
    assert w.open_text_file(str(good))
    assert w.editor.toPlainText() == "Grüße aus Köln. Zweiter Satz."
    w.editor.undo()     # undo/redo come with the editor
    assert w.editor.toPlainText() == "keep me"
    w.editor.redo()
    out = tmp_path / "saved.txt"
    assert w.save_text_to(str(out)) and out.read_text(encoding="utf-8") == w.editor.toPlainText()

    dropped = tmp_path / "dropped.txt"
    dropped.write_text("Dropped text.", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    w.editor.dropEvent(event)
    assert w.editor.toPlainText() == "Dropped text."


def test_save_audio_wav_flac_and_plots_png(make_window, qtbot, tmp_path):
    w = make_window()
    assert not w.save_audio_to(str(tmp_path / "early.wav"))
    assert "no audio to save" in w.last_error
    short_frames(w, FRAMES)
    w.editor.setPlainText("Save me. Please.")
    _speak_and_wait(qtbot, w)
    audio = w.current_audio()
    for name in ("speech.wav", "speech.flac"):
        assert w.save_audio_to(str(tmp_path / name))
        data, sr = sf.read(str(tmp_path / name), dtype="float32")
        assert sr == w.voice_info.sample_rate and len(data) == len(audio)
        np.testing.assert_allclose(data, audio / max(1.0, np.abs(audio).max()), atol=1 / 16000)
    assert not w.save_audio_to(str(tmp_path / "speech.mp3"))
    assert "use a .wav or .flac" in w.last_error
    png = tmp_path / "plots.png"
    assert w.save_plots_to(str(png))
    image = QImage(str(png))
    assert not image.isNull() and image.width() == w.plots.width()


def test_settings_persist_across_two_windows(make_window, qtbot, settings_file):
    w1 = make_window()
    w1.options.sigma.setValue(0.45)
    w1.options.denoise.setValue(0.2)
    w1.options.seed.setValue(123)
    w1.options.prenet_dropout.setChecked(False)
    w1.options.vocoder.setCurrentIndex(w1.options.vocoder.findData("griffin-lim"))
    w1.transport.set_volume(0.3)
    cpu = w1.device_combo.findData("cpu")
    w1.device_combo.setCurrentIndex(cpu)
    w1.device_combo.activated.emit(cpu)
    qtbot.waitUntil(lambda: w1.voice_info.requested_device == "cpu", timeout=30000)
    w1.close()

    w2 = make_window(settings=settings_file)
    assert w2.options.sigma.value() == pytest.approx(0.45)
    assert w2.options.denoise.value() == pytest.approx(0.2)
    assert w2.options.seed.value() == 123 and not w2.options.prenet_dropout.isChecked()
    assert w2.transport.volume.value() == 30
    assert w2.device() == "cpu" and w2.voice_info.requested_device == "cpu"
    opts = w2.options.options()
    assert (opts.sigma, opts.seed, opts.prenet_dropout) == (pytest.approx(0.45), 123, False)
    assert opts.vocoder == "griffin-lim" and not w2.options.sigma.isEnabled()


def test_playback_controls_disabled_with_reason_without_output(make_window):
    w = make_window(playback=(False, "PortAudio is not available (test)"))
    for b in (w.transport.play_button, w.transport.replay_button, w.transport.slider):
        assert not b.isEnabled()
        assert "PortAudio is not available (test)" in b.toolTip()
    assert w.transport.reason_label.text() == "No playback: PortAudio is not available (test)"
    assert w.speak_button.isEnabled()


def test_griffin_lim_vocoder_from_the_advanced_panel(make_window, qtbot):
    """Choosing Griffin-Lim in the Advanced panel: WaveGlow's own controls grey out, and Speak
    vocodes with Griffin-Lim (its stage shows in the stats; WaveGlow's does not run)."""
    w = make_window()
    short_frames(w, 16)
    assert w.options.sigma.isEnabled() and w.options.denoise.isEnabled()
    w.options.vocoder.setCurrentIndex(w.options.vocoder.findData("griffin-lim"))
    assert not w.options.sigma.isEnabled() and not w.options.denoise.isEnabled()
    w.editor.setPlainText("Phase from the mel alone.")
    with qtbot.waitSignal(w.utteranceFinished, timeout=60000):
        w.speak()
    assert not w.last_error
    assert w.stats.text("stage:griffin_lim").endswith(" ms")
    assert w.stats.text("stage:waveglow") == w.stats.text("stage:denoiser") == "–"
    assert len(w._pieces) == 1 and len(w._pieces[0]) == 16 * 256
