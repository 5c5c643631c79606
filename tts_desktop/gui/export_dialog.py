"""Batch export: line N of a phrase file becomes N.wav (or .flac) in a folder.

The work is `cli.cmd_export.export_phrases`, run by the synthesis worker (it owns the voice), with
the dialog's own cancel event. Files are written atomically, so cancelling leaves only whole
files. The summary lists blank and failed lines by line number.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout,
                               QWidget)

# Imported with the window, not on the first Export click: an import runs Python on the UI thread
# just as the worker starts computing, and under that GIL contention it stalled the dialog.
from tts_desktop.cli.cmd_export import read_phrases
from tts_desktop.cli.errors import CliError
from tts_desktop.gui.ui_busy import PaintsAsBusy

FORMATS = {"WAV, 16-bit": ("pcm16", ".wav"), "WAV, 32-bit float": ("float", ".wav"),
           "FLAC, 16-bit": ("pcm16", ".flac")}


def eta_text(done: int, total: int, elapsed: float) -> str:
    if done <= 0 or total <= done:
        return ""
    remaining = elapsed / done * (total - done)
    m, s = divmod(int(round(remaining)), 60)
    return f"about {m} min {s:02d} s left" if m else f"about {s} s left"


def summary_text(report, out_dir: Path, cancelled: bool = False) -> str:
    lines = [f"{'Cancelled: ' if cancelled else ''}wrote {len(report.written)} file(s) to {out_dir}"]
    if report.compute_seconds:
        lines[0] += (f" ({report.audio_seconds:.1f} s of audio in {report.compute_seconds:.1f} s, "
                     f"RTF {report.audio_seconds / report.compute_seconds:.2f})")
    if report.blank:
        lines.append("Blank lines (no file): " + ", ".join(str(n) for n in report.blank))
    for n, reason in report.failed:
        lines.append(f"Line {n} FAILED: {reason}")
    if not report.blank and not report.failed:
        lines.append("No blank or failed lines.")
    return "\n".join(lines)


class ExportDialog(PaintsAsBusy, QDialog):
    """Asks the window to start an export; the window feeds progress and the result back."""

    startRequested = Signal(list, str, str, str)   # lines, out_dir, subtype, suffix
    cancelRequested = Signal()

    def __init__(self, parent=None, start_dir: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export phrases")
        self.setMinimumWidth(600)
        self.phrases = QLineEdit()
        self.phrases.setPlaceholderText("text file, one phrase per line (UTF-8)")
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("folder for 1.wav, 2.wav, … (created if missing)")
        self.format = QComboBox()
        self.format.addItems(list(FORMATS))
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta = QLabel()
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setObjectName("exportSummary")
        self.summary.setFixedHeight(110)
        self.start_button = QPushButton("Export")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.start_dir = start_dir

        form = QFormLayout()
        form.addRow("Phrase file", self._row(self.phrases, self._pick_phrases))
        form.addRow("Output folder", self._row(self.out_dir, self._pick_folder))
        form.addRow("Format", self.format)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.running = False
        self._t0 = 0.0
        self._out: Path | None = None

    def _row(self, line: QLineEdit, pick) -> QWidget:
        row = QWidget(self)
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(line, 1)
        b = QPushButton("Browse…", row)
        b.clicked.connect(pick)
        h.addWidget(b)
        return row

    def _pick_phrases(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Phrase file", self.start_dir,
                                              "Text files (*.txt);;All files (*)")
        if path:
            self.phrases.setText(path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder", self.start_dir)
        if path:
            self.out_dir.setText(path)

    def _error(self, text: str) -> None:
        self.summary.setPlainText(text)

    def start(self) -> None:
        phrases, out = self.phrases.text().strip(), self.out_dir.text().strip()
        if not phrases:
            return self._error("Choose a phrase file.")
        if not out:
            return self._error("Choose an output folder.")
        out_dir = Path(out).expanduser()
        if out_dir.exists() and not out_dir.is_dir():
            return self._error(f"{out_dir} exists and is not a folder.")
        try:
            lines = read_phrases(Path(phrases).expanduser())
        except CliError as e:
            return self._error(str(e))
        if not any(line.strip() for line in lines):
            return self._error(f"{phrases} has no phrases: every line is blank.")
        subtype, suffix = FORMATS[self.format.currentText()]
        self.running = True
        self._out = out_dir
        self._t0 = time.perf_counter()
        self.progress.setRange(0, len(lines))
        self.progress.setValue(0)
        self.eta.setText("Starting…")
        self.summary.clear()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        # Paint the new state now, while the worker is still idle, not on the next pass next to
        # an export that has just started computing (a paint takes the GIL many times).
        self.repaint()
        self.startRequested.emit(lines, str(out_dir), subtype, suffix)

    def cancel(self) -> None:
        if self.running:
            self.eta.setText("Cancelling…")
            self.cancelRequested.emit()

    # ---- fed by the window
    def on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        eta = eta_text(done, total, time.perf_counter() - self._t0)
        self.eta.setText(f"{done} of {total} lines" + (f" · {eta}" if eta else ""))

    def _finish(self, text: str) -> None:
        self.running = False
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.summary.setPlainText(text)

    def on_finished(self, report) -> None:
        self.eta.setText(f"Done in {time.perf_counter() - self._t0:.1f} s")
        self._finish(summary_text(report, self._out))

    def on_cancelled(self) -> None:
        self.eta.setText("Cancelled")
        self._finish(f"Cancelled after {self.progress.value()} of {self.progress.maximum()} lines. "
                     f"Files already written to {self._out} are complete; the line being "
                     "synthesized left no partial file.")

    def on_failed(self, text: str) -> None:
        self.eta.setText("Failed")
        self._finish(f"Export failed: {text}")

    def closeEvent(self, event) -> None:
        # Closing the dialog cancels a running export rather than leaving it running unseen.
        self.cancel()
        super().closeEvent(event)
