"""Start the desktop app: `tts-desktop gui` (and `tts-desktop` alone) land in `run_app`."""

from __future__ import annotations

import sys


def run_app(voice: str | None = None, device: str | None = None, precision: str | None = None,
            argv: list[str] | None = None) -> int:
    """Open the window and run until it closes; returns the exit code.

    The command line always passes device "auto" and precision "fp16" (its defaults), which cannot
    be told apart from an explicit choice; those two values therefore mean "as last time" and the
    saved settings win. Any other value (--device cpu, --precision fp32) overrides them.
    """
    from PySide6.QtWidgets import QApplication

    from tts_desktop.gui.main_window import MainWindow
    from tts_desktop.gui.settings import APPLICATION, ORGANIZATION

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow(voice=voice, device=None if device in (None, "auto") else device,
                        precision=None if precision in (None, "fp16") else precision)
    window.show()
    return int(app.exec())
