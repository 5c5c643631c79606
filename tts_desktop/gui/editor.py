"""The text editor: a plain-text box that takes dropped .txt files, plus UTF-8 file reading."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

TEXT_SUFFIXES = (".txt", ".text", ".md")
MAX_TEXT_BYTES = 5 * 1024 * 1024   # more than any sensible script; guards against dropping a movie


class TextFileError(Exception):
    """A text file that cannot be opened; the message names the file and the reason."""


def read_text_file(path: str | Path) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise TextFileError(f"cannot open {path.name}: it is {size / 1e6:.0f} MB, "
                                f"more than the {MAX_TEXT_BYTES // (1024 * 1024)} MB a text may have")
        raw = path.read_bytes()
    except OSError as e:
        raise TextFileError(f"cannot open {path}: {e.strerror or e}") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextFileError(f"cannot open {path.name}: it is not UTF-8 text "
                            f"(invalid byte 0x{raw[e.start]:02x} at offset {e.start})") from e


def write_text_file(path: str | Path, text: str) -> None:
    from tts_desktop.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as e:
        raise TextFileError(f"cannot save {path}: {e.strerror or e}") from e


def _dropped_file(event) -> Path | None:
    md = event.mimeData()
    if not md.hasUrls():
        return None
    for url in md.urls():
        if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in TEXT_SUFFIXES:
            return Path(url.toLocalFile())
    return None


class TextEditor(QPlainTextEdit):
    """Undo/redo come with QPlainTextEdit; this adds Ctrl+Enter and dropping text files."""

    fileDropped = Signal(str)
    speakRequested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Type or paste text here, or drop a .txt file, then press Ctrl+Enter to speak.")
        for keys in ("Ctrl+Return", "Ctrl+Enter"):  # Enter on the keypad is a different key
            QShortcut(QKeySequence(keys), self, activated=self.speakRequested.emit)

    def replace_all(self, text: str) -> None:
        """Replace the whole text as one undoable edit (setPlainText would wipe the undo history)."""
        cursor = self.textCursor()
        cursor.beginEditBlock()
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.insertText(text)
        cursor.endEditBlock()
        cursor.movePosition(QTextCursor.MoveOperation.Start)
        self.setTextCursor(cursor)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if _dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_file(event)
        if path is None:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        self.fileDropped.emit(str(path))
