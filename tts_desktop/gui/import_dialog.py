"""Import NVIDIA Tacotron2 + WaveGlow checkpoints as a new voice in the user's voice folder,
or download NVIDIA's published LJSpeech voice from NGC (tts_desktop.download) and import that.

The import reads two checkpoints (hundreds of MB for NGC's) and writes the voice folder, so it
runs on its own short-lived thread; it never touches the loaded Voice, so it need not wait for
the synthesis worker. The new folder appears atomically (import_voice writes it that way).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from tts_desktop.gui.worker import describe_error
from tts_desktop.voices import user_voices_dir

DOWNLOADABLE_VOICE = "nvidia-ljspeech"  # tts_desktop.download.CATALOGUE
CHECKPOINT_FILTER = "PyTorch checkpoints (*.pt *.pth *.tar *.ckpt);;All files (*)"


def folder_name(name: str) -> str:
    """A safe folder name for a voice name: letters, digits, '-', '_' and '.'."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return slug or "voice"


class ImportThread(QThread):
    progress = Signal(float, str)
    done = Signal(str)        # the voice folder
    failed = Signal(str)

    def __init__(self, tacotron2: Path, waveglow: Path, out_dir: Path, name: str) -> None:
        super().__init__()
        self.args = (tacotron2, waveglow, out_dir, name)

    def run(self) -> None:
        from tts_desktop.model.importer import import_voice

        tacotron2, waveglow, out_dir, name = self.args
        try:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            path = import_voice(tacotron2, waveglow, out_dir, name=name,
                                progress=lambda f, m: self.progress.emit(float(f), str(m)))
        except Exception as e:  # noqa: BLE001 - a bad checkpoint is a message, not a crash
            self.failed.emit(describe_error(e))
            return
        self.done.emit(str(path))


class DownloadThread(QThread):
    """Runs tts_desktop.download.download_voice; a cancelled download keeps its partial files,
    so pressing Download again resumes where it stopped."""

    progress = Signal(float, str)
    done = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, entry: str, voices_dir: Path) -> None:
        super().__init__()
        self.entry, self.voices_dir = entry, voices_dir
        self.stop = threading.Event()

    def run(self) -> None:
        from tts_desktop.download import DownloadCancelled, download_voice

        try:
            path = download_voice(self.entry, self.voices_dir, cancel=self.stop.is_set,
                                  progress=lambda f, m: self.progress.emit(float(f), str(m)))
        except DownloadCancelled:
            self.cancelled.emit()
            return
        except Exception as e:  # noqa: BLE001 - no network, HTTP errors, bad files: a message
            self.failed.emit(describe_error(e))
            return
        self.done.emit(str(path))


def _file_row(parent: QWidget, line: QLineEdit, title: str) -> QWidget:
    row = QWidget(parent)
    h = QHBoxLayout(row)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(line, 1)
    browse = QPushButton("Browse…", row)
    h.addWidget(browse)

    def pick():
        path, _ = QFileDialog.getOpenFileName(parent, title, line.text() or str(Path.home()),
                                              CHECKPOINT_FILTER)
        if path:
            line.setText(path)

    browse.clicked.connect(pick)
    return row


class ImportDialog(QDialog):
    imported = Signal(str)    # the new voice folder

    def __init__(self, parent=None, voices_dir: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import voice")
        self.setMinimumWidth(560)
        self.voices_dir = voices_dir or user_voices_dir()
        self.tacotron2 = QLineEdit()
        self.tacotron2.setPlaceholderText("NVIDIA Tacotron2 checkpoint (.pt)")
        self.waveglow = QLineEdit()
        self.waveglow.setPlaceholderText("NVIDIA WaveGlow checkpoint (.pt)")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. ljspeech")
        self.destination = QLabel()
        self.destination.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.message = QLabel()
        self.message.setObjectName("importMessage")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.import_button = self.buttons.addButton("Import", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        form = QFormLayout()
        form.addRow("Tacotron2", _file_row(self, self.tacotron2, "Tacotron2 checkpoint"))
        form.addRow("WaveGlow", _file_row(self, self.waveglow, "WaveGlow checkpoint"))
        form.addRow("Voice name", self.name)
        form.addRow("Saved to", self.destination)
        self.download_button = QPushButton("Download NVIDIA LJSpeech voice (NGC)…")
        self.download_button.setToolTip("Fetch NVIDIA's published LJSpeech Tacotron2 and WaveGlow "
                                        "checkpoints from NGC (resumes an interrupted download) and "
                                        "import them as the voice 'nvidia-ljspeech'")
        self.cancel_download_button = QPushButton("Cancel download")
        self.cancel_download_button.setEnabled(False)
        download_row = QHBoxLayout()
        download_row.addWidget(self.download_button, 1)
        download_row.addWidget(self.cancel_download_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(download_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.import_button.clicked.connect(self.start)
        self.close_button.clicked.connect(self.reject)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_download_button.clicked.connect(self.cancel_download)
        self.name.textChanged.connect(self._show_destination)
        self.thread: ImportThread | DownloadThread | None = None
        self._show_destination()

    def out_dir(self) -> Path:
        return self.voices_dir / folder_name(self.name.text())

    def _show_destination(self) -> None:
        self.destination.setText(str(self.out_dir()) if self.name.text().strip() else str(self.voices_dir))

    def _fail(self, text: str) -> None:
        self.message.setStyleSheet("color: #c00000")
        self.message.setText(text)

    def start(self) -> None:
        tacotron2, waveglow = Path(self.tacotron2.text().strip()), Path(self.waveglow.text().strip())
        name = self.name.text().strip()
        for label, path in (("Tacotron2", tacotron2), ("WaveGlow", waveglow)):
            if not str(path) or str(path) == "." or not path.is_file():
                return self._fail(f"choose the {label} checkpoint file" if str(path) in ("", ".")
                                  else f"the {label} checkpoint {path} does not exist")
        if not name:
            return self._fail("give the voice a name")
        out_dir = self.out_dir()
        if out_dir.exists():
            return self._fail(f"a voice folder {out_dir.name} already exists in {out_dir.parent}: "
                              "choose another name")
        self.message.setStyleSheet("")
        self.message.setText("Importing…")
        self.import_button.setEnabled(False)
        self.thread = ImportThread(tacotron2, waveglow, out_dir, name)
        self.thread.progress.connect(self._on_progress)
        self.thread.done.connect(self._on_done)
        self.thread.failed.connect(self._on_failed)
        self.thread.start()

    def _busy(self, busy: bool) -> None:
        self.import_button.setEnabled(not busy)
        self.download_button.setEnabled(not busy)

    def start_download(self) -> None:
        self.message.setStyleSheet("")
        self.message.setText("Connecting…")
        self.progress.setValue(0)
        self._busy(True)
        self.cancel_download_button.setEnabled(True)
        thread = DownloadThread(DOWNLOADABLE_VOICE, self.voices_dir)
        thread.progress.connect(self._on_progress)
        thread.done.connect(self._on_downloaded)
        thread.failed.connect(self._on_download_failed)
        thread.cancelled.connect(self._on_download_cancelled)
        self.thread = thread
        thread.start()

    def cancel_download(self) -> None:
        if isinstance(self.thread, DownloadThread):
            self.thread.stop.set()

    def _download_ended(self) -> None:
        self._busy(False)
        self.cancel_download_button.setEnabled(False)

    def _on_downloaded(self, path: str) -> None:
        self._download_ended()
        self.progress.setValue(100)
        self.message.setText(f"Downloaded and imported the voice into {path}")
        self.imported.emit(path)

    def _on_download_failed(self, text: str) -> None:
        self._download_ended()
        self._fail(f"Download failed: {text}")

    def _on_download_cancelled(self) -> None:
        self._download_ended()
        self.message.setText("Download cancelled; press Download again to resume.")

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(round(fraction * 100))
        self.message.setText(message)

    def _on_done(self, path: str) -> None:
        self.progress.setValue(100)
        self.message.setText(f"Imported voice '{self.name.text().strip()}' into {path}")
        self.import_button.setEnabled(True)
        self.imported.emit(path)

    def _on_failed(self, text: str) -> None:
        self.progress.setValue(0)
        self.import_button.setEnabled(True)
        self._fail(f"Import failed: {text}")

    def done(self, result: int) -> None:
        # Closing while importing would orphan the thread; let it finish (the folder appears whole).
        # A download is cancelled instead: its partial files stay for a later resume.
        if self.thread is not None and self.thread.isRunning():
            self.cancel_download()
            self.thread.wait()
        super().done(result)
