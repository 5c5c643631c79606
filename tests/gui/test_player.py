"""The playback buffer's logic (no device needed) and playback through a real PortAudio output."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tts_desktop.audio.playback import playback_status
from tts_desktop.gui.player import AudioPlayer, PlaybackBuffer


def test_buffer_plays_in_order_scaled_by_volume_and_stops_at_end_when_complete():
    b = PlaybackBuffer()
    b.reset(complete=False)
    b.append(np.arange(1, 6, dtype=np.float32))
    b.volume = 0.5
    out = np.full(3, 9.0, np.float32)
    assert b.fill(out) is True
    assert out.tolist() == [0.5, 1.0, 1.5] and b.position == 3
    out = np.full(4, 9.0, np.float32)
    # Not complete yet: the rest is silence and the stream keeps going (the next sentence may come).
    assert b.fill(out) is True
    assert out.tolist() == [2.0, 2.5, 0.0, 0.0] and b.position == 5
    b.append(np.array([6.0], np.float32))
    b.set_complete()
    out = np.full(2, 9.0, np.float32)
    assert b.fill(out) is False          # end of a complete buffer: stop
    assert out.tolist() == [3.0, 0.0] and b.at_end


def test_buffer_pause_holds_position_and_writes_silence():
    b = PlaybackBuffer()
    b.reset(complete=True)
    b.append(np.ones(10, np.float32))
    b.paused = True
    out = np.full(4, 9.0, np.float32)
    assert b.fill(out) is True and not out.any() and b.position == 0
    b.paused = False
    b.fill(out)
    assert out.tolist() == [1.0] * 4 and b.position == 4


def test_buffer_grows_across_many_appends_and_seek_clamps():
    b = PlaybackBuffer()
    b.reset()
    pieces = [np.full(30000, i, np.float32) for i in range(5)]
    for p in pieces:
        b.append(p)
    assert b.length == 150000
    np.testing.assert_array_equal(b.samples(), np.concatenate(pieces))
    b.seek(10**9)
    assert b.position == b.length
    b.seek(-5)
    assert b.position == 0


def test_player_without_output_is_disabled_but_keeps_audio(qtbot):
    p = AudioPlayer(status=(False, "no audio output device"))
    p.begin(16000)
    p.append(np.ones(1600, np.float32))
    p.play()                              # a no-op, not an error
    assert p.state == "stopped" and p.duration() == pytest.approx(0.1)
    assert not p.available and "no audio output" in p.reason


def _need_output():
    ok, reason = playback_status()
    if not ok:
        pytest.skip(f"no PortAudio output here: {reason}")


def test_real_output_plays_to_the_end(qtbot):
    _need_output()
    p = AudioPlayer()
    p.begin(22050)
    p.append(np.zeros(2205, np.float32))      # 0.1 s of silence: nothing audible in a test
    p.finish()
    with qtbot.waitSignal(p.stateChanged, timeout=2000):
        p.play()
    assert p.state == "playing"
    qtbot.waitUntil(lambda: p.state == "stopped", timeout=5000)
    assert p.buffer.position == p.buffer.length == 2205


def test_real_output_pause_holds_position(qtbot):
    _need_output()
    p = AudioPlayer()
    p.begin(22050)
    p.append(np.zeros(22050 * 5, np.float32))
    p.play()
    qtbot.waitUntil(lambda: p.buffer.position > 0, timeout=5000)
    p.pause()
    time.sleep(0.05)     # a callback already running finishes its block
    held = p.buffer.position
    qtbot.wait(150)
    assert p.state == "paused" and p.buffer.position == held
    p.stop()
    assert p.state == "stopped"


def test_real_output_plays_in_real_time(qtbot):
    """An output that takes samples faster than it plays them (ALSA's null device takes ~1000x
    real time) is held to real time: its callback thread must not spin a core, and the playhead
    moves as the audio would."""
    _need_output()
    p = AudioPlayer()
    p.begin(22050)
    p.append(np.zeros(22050, np.float32))     # 1 s of silence
    p.finish()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    p.play()
    qtbot.waitUntil(lambda: p.state == "stopped", timeout=5000)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    assert wall >= 0.5, wall             # at most the 0.5 s of slack ahead of real time
    assert cpu < 0.5 * wall, (cpu, wall)  # no core spinning in the callback
