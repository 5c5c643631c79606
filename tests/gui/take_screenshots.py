"""Screenshots of the real window after a Speak, for docs/screenshots/ (a script, not a test).

Run under a real X server of the wanted size, e.g.
    xvfb-run -s "-screen 0 1280x800x24" python tests/gui/take_screenshots.py 1280x800
    xvfb-run -s "-screen 0 1920x1080x24" python tests/gui/take_screenshots.py 1920x1080 [VOICE]
VOICE: a voice name or folder, or golden-small (imported from ../shared); default: the default voice.
The window fills the screen and the whole screen is captured, so clipping shows as it would for a user.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    size = argv[0] if argv else "1280x800"
    voice = argv[1] if len(argv) > 1 else None
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from tts_desktop.gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="screens-"))
    if voice == "golden-small":  # NVIDIA's small golden checkpoints (random weights)
        from tts_desktop.model.importer import import_voice

        golden = REPO.parent / "shared" / "golden" / "small"
        voice = str(import_voice(golden / "tacotron2_dle.pt", golden / "waveglow_dle.pt",
                                 tmp / "golden-small", name="golden-small"))
    # voice None: the default voice, the bundled demo (a trained one: its own stop token ends each sentence)
    # Silent: nothing to hear on a virtual screen, and the player's transport then shows its
    # final state (0:00 of the whole utterance) rather than wherever playback happened to be.
    w = MainWindow(voice=voice, settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat),
                   playback=(False, "screenshots are silent"))
    # Xvfb has no window manager to maximise with: fill the screen by hand.
    w.setGeometry(app.primaryScreen().availableGeometry())
    w.show()

    def pump(predicate, timeout):
        t0 = time.perf_counter()
        while not predicate() and time.perf_counter() - t0 < timeout:
            app.processEvents()
            time.sleep(0.01)

    pump(lambda: w.voice_info is not None or bool(w.last_error), 120)
    if w.voice_info is None:
        print(w.last_error, file=sys.stderr)
        return 1
    if w.voice_info.name == "golden-small":
        # random weights stop at once: decode a fixed number of frames per sentence
        w.options.max_frames.setValue(90)
        w.options.early_stop.setChecked(False)
    w.options.seed.setValue(3)
    done = []
    w.utteranceFinished.connect(lambda: done.append(1))
    w.editor.setPlainText("Hello there! This is TTS Desktop. The mel spectrogram and the attention "
                          "alignment grow sentence by sentence.")
    w.speak()
    pump(lambda: bool(done), 300)
    w.speak()          # a second utterance, so the history plots show a line
    done.clear()
    pump(lambda: bool(done), 300)
    w.player.stop()
    pump(lambda: False, 1.0)
    out = REPO / "docs" / "screenshots" / f"main-window-{size}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    shot = app.primaryScreen().grabWindow(0)
    shot.save(str(out), "PNG")
    print(f"wrote {out} ({shot.width()}x{shot.height()})")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
