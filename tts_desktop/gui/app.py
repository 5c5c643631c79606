"""Start the desktop app: `tts-desktop gui` (and `tts-desktop` alone) land in `run_app`."""

from __future__ import annotations

import sys


def run_app(voice: str | None = None, device: str | None = None, precision: str | None = None,
            argv: list[str] | None = None) -> int:
    """Open the window and run until it closes; returns the exit code.

    None (the command line's option left out) means "as last time": the saved settings win.
    """
    from PySide6.QtWidgets import QApplication

    from tts_desktop.gui.main_window import MainWindow
    from tts_desktop.gui.settings import APPLICATION, ORGANIZATION

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow(voice=voice, device=device, precision=precision)
    window.show()
    return int(app.exec())
