"""Responsiveness benchmark (a script, not a test): how long does the UI thread's event loop stall
while the real window synthesizes and exports?

A QTimer asks to fire every 5 ms; each firing's lateness beyond those 5 ms is time the event loop
could not run (the GUI thread was busy drawing plots, taking results in, or waiting on the GIL
while the worker computed). The longest lateness is the worst stall a user could feel.

    QT_QPA_PLATFORM=offscreen python tests/gui/stall_probe.py [--voice DIR] [--frames N]

Without --voice, a voice is imported from ../shared/golden/small (random weights, reduced size).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

INTERVAL_MS = 5


class StallMeter:
    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer(interval=INTERVAL_MS)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.lateness: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.lateness = []
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        late = sorted(self.lateness) or [0.0]
        return {"ticks": len(self.lateness), "max_ms": late[-1] * 1000,
                "p99_ms": late[int(0.99 * (len(late) - 1))] * 1000,
                "median_ms": late[len(late) // 2] * 1000}

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness.append(max(0.0, now - self._last - INTERVAL_MS / 1000))
        self._last = now


def wait_for(app, predicate, timeout: float) -> None:
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("timed out")
        app.processEvents()
        time.sleep(0.001)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voice", help="voice folder (default: import the golden small checkpoints)")
    p.add_argument("--frames", type=int, default=64, help="mel frames per sentence (fixed, no stop token)")
    p.add_argument("--sentences", type=int, default=8)
    p.add_argument("--lines", type=int, default=8, help="phrase lines to export")
    args = p.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from tts_desktop.gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="stall-probe-"))
    voice = args.voice
    if voice is None:
        from tts_desktop.model.importer import import_voice

        golden = Path(__file__).resolve().parents[3] / "shared" / "golden" / "small"
        voice = str(import_voice(golden / "tacotron2_dle.pt", golden / "waveglow_dle.pt", tmp / "voice"))
    w = MainWindow(voice=voice, device="cpu",
                   settings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat),
                   playback=(False, "stall probe: no playback"))
    w.resize(1280, 800)
    w.show()
    wait_for(app, lambda: w.voice_info is not None or bool(w.last_error), 120)
    if w.voice_info is None:
        print(f"voice did not load: {w.last_error}", file=sys.stderr)
        return 1
    w.options.max_frames.setValue(args.frames)
    w.options.early_stop.setChecked(False)
    w.options.seed.setValue(1)
    meter = StallMeter()

    w.editor.setPlainText(" ".join(f"This is sentence number {i}." for i in range(1, args.sentences + 1)))
    done = []
    w.utteranceFinished.connect(lambda: done.append(1))
    meter.start()
    t0 = time.perf_counter()
    w.speak()
    wait_for(app, lambda: bool(done), 600)
    synth = meter.stop()
    synth["seconds"] = time.perf_counter() - t0

    phrases = tmp / "phrases.txt"
    phrases.write_text("\n".join(f"Phrase {i}." for i in range(1, args.lines + 1)) + "\n", encoding="utf-8")
    d = w.show_export_dialog()
    d.phrases.setText(str(phrases))
    d.out_dir.setText(str(tmp / "export"))
    ended = []
    w.exportEnded.connect(ended.append)
    meter.start()
    t0 = time.perf_counter()
    d.start()
    wait_for(app, lambda: bool(ended), 600)
    export = meter.stop()
    export["seconds"] = time.perf_counter() - t0

    for name, r in (("synthesis", synth), ("export", export)):
        print(f"{name:9s}: {r['seconds']:.1f} s, {r['ticks']} ticks of {INTERVAL_MS} ms; event-loop "
              f"lateness max {r['max_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, median {r['median_ms']:.2f} ms")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
