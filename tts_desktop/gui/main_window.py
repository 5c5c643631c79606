"""The main window: editor and controls on the left, plots on the right.

The window never synthesizes: it sends requests to the synthesis worker (worker.py) and draws what
comes back, sentence by sentence. Results of a request that has since been stopped or superseded
are recognised by their request id and dropped, so Stop takes effect in the UI at once even while
the worker is still finishing the stage it was in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QPushButton, QScrollArea, QSplitter,
                               QVBoxLayout, QWidget)

from tts_desktop.api import join_sentences
from tts_desktop.gui.alignment_plot import AlignmentPlot
from tts_desktop.gui.editor import TextEditor, TextFileError, read_text_file, write_text_file
from tts_desktop.gui.export_dialog import ExportDialog
from tts_desktop.gui.history_plot import HistoryPlot
from tts_desktop.gui.import_dialog import ImportDialog
from tts_desktop.gui.mel_plot import MelPlot
from tts_desktop.gui.options_panel import OptionsPanel
from tts_desktop.gui.player import AudioPlayer
from tts_desktop.gui.settings import Settings
from tts_desktop.gui.stats_panel import StatsPanel
from tts_desktop.gui.transport import Transport
from tts_desktop.gui.ui_busy import PaintsAsBusy
from tts_desktop.gui.ui_queue import UiQueue
from tts_desktop.gui.worker import VoiceInfo, WorkerClient

DEVICES = [("Auto", "auto"), ("GPU", "cuda"), ("CPU", "cpu")]
PRECISIONS = [("FP16", "fp16"), ("FP32", "fp32")]
SAMPLE_TEXT = ("Hello! This is TTS Desktop, speaking with NVIDIA's Tacotron 2 and WaveGlow. "
               "Each sentence plays while the next one is being synthesized.")


class MainWindow(PaintsAsBusy, QMainWindow):
    # Emitted on the GUI thread after the window has taken a worker result in (for observers such
    # as tests and the stall probe; the worker's own signals are emitted on the worker's thread).
    sentenceShown = Signal(int)        # sentences shown so far in this utterance
    utteranceFinished = Signal()
    speakCancelAcknowledged = Signal()
    exportEnded = Signal(str)          # "finished", "cancelled" or "failed"

    def __init__(self, voice: str | None = None, device: str | None = None,
                 precision: str | None = None, settings: QSettings | None = None,
                 playback: tuple[bool, str] | None = None) -> None:
        """voice/device/precision: from the command line; None takes the saved setting.
        playback: (available, reason) to override the detected audio output (tests)."""
        super().__init__()
        self.setWindowTitle("TTS Desktop")
        self.settings = Settings(settings)
        self.client = WorkerClient(self)
        self.player = AudioPlayer(self, status=playback)
        self.voice_info: VoiceInfo | None = None
        self.last_error = ""
        self._speak_id: int | None = None
        self._load_id: int | None = None
        self._pending_load: tuple[str | None, str, str] | None = None
        self._pieces: list[np.ndarray] = []
        self._plot_jobs = UiQueue(self)
        self._stages: dict[str, float] = {}
        self._frames = 0
        self._pause = 0.2
        self._where = ""
        self._export_dialog: ExportDialog | None = None
        self._error_box: QMessageBox | None = None

        self._build_widgets()
        self._build_menus()
        self._connect_worker()
        self._restore(voice, device, precision)

    # ------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        # Top bar: voice, device, precision and the loaded voice's status.
        self.voice_combo = QComboBox()
        self.voice_combo.setObjectName("voice")
        self.voice_combo.setMinimumContentsLength(18)
        self.import_button = QPushButton("Import…")
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("device")
        for title, value in DEVICES:
            self.device_combo.addItem(title, value)
        self.precision_combo = QComboBox()
        self.precision_combo.setObjectName("precision")
        for title, value in PRECISIONS:
            self.precision_combo.addItem(title, value)
        self.voice_label = QLabel("No voice loaded")
        self.voice_label.setObjectName("voiceStatus")
        self.load_progress = QProgressBar()
        self.load_progress.setObjectName("loadProgress")
        self.load_progress.setMaximumWidth(220)
        self.load_progress.setTextVisible(True)
        self.load_progress.hide()
        top = QHBoxLayout()
        top.addWidget(QLabel("Voice"))
        top.addWidget(self.voice_combo)
        top.addWidget(self.import_button)
        top.addSpacing(12)
        top.addWidget(QLabel("Device"))
        top.addWidget(self.device_combo)
        top.addWidget(QLabel("Precision"))
        top.addWidget(self.precision_combo)
        top.addSpacing(12)
        top.addWidget(self.voice_label, 1)
        top.addWidget(self.load_progress)

        # Left: editor, Speak/Stop, playback, options, stats.
        self.editor = TextEditor()
        self.editor.setObjectName("editor")
        self.counts = QLabel("0 characters · 0 sentences")
        self.counts.setObjectName("counts")
        self.speak_button = QPushButton("Speak")
        self.speak_button.setObjectName("speak")
        self.speak_button.setToolTip("Speak the text (Ctrl+Enter)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stop")
        self.stop_button.setToolTip("Stop synthesis and playback (Esc)")
        self.stop_button.setEnabled(False)
        self.transport = Transport(self.player)
        self.options = OptionsPanel()
        self.stats = StatsPanel()
        buttons = QHBoxLayout()
        buttons.addWidget(self.speak_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        self.counts.setAlignment(Qt.AlignmentFlag.AlignRight)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.editor, 1)
        lv.addWidget(self.counts)
        lv.addLayout(buttons)
        lv.addWidget(self.transport)
        lv.addWidget(self.transport.reason_label)
        below = QHBoxLayout()
        below.addWidget(self.options, 0, Qt.AlignmentFlag.AlignTop)
        below.addWidget(self.stats, 1)
        lv.addLayout(below)

        # Right: the three plots, resizable against each other.
        self.mel_plot = MelPlot()
        self.alignment_plot = AlignmentPlot()
        self.history_plot = HistoryPlot()
        self.plots = QSplitter(Qt.Orientation.Vertical)
        self.plots.setObjectName("plots")
        for w in (self.mel_plot, self.alignment_plot, self.history_plot):
            self.plots.addWidget(w)
        self.plots.setStretchFactor(0, 4)
        self.plots.setStretchFactor(1, 4)
        self.plots.setStretchFactor(2, 2)
        self.plots.setChildrenCollapsible(False)
        for w in (self.mel_plot, self.alignment_plot, self.history_plot):
            w.setMinimumHeight(150)

        # The left column scrolls rather than squeezing the stats on small screens.
        left_scroll = QScrollArea()
        left_scroll.setWidget(left)
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        left.setMinimumWidth(430)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_scroll)
        split.addWidget(self.plots)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([470, 800])
        self.split = split
        split.setChildrenCollapsible(False)

        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(6, 6, 6, 0)
        v.addLayout(top)
        v.addWidget(split, 1)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.resize(1280, 800)

        self._count_timer = QTimer(self, singleShot=True, interval=150)
        self._count_timer.timeout.connect(self._update_counts)
        self.editor.textChanged.connect(self._count_timer.start)
        self.editor.speakRequested.connect(self.speak)
        self.editor.fileDropped.connect(self.open_text_file)
        self.speak_button.clicked.connect(self.speak)
        self.stop_button.clicked.connect(self.stop)
        self.import_button.clicked.connect(self.show_import_dialog)
        self.voice_combo.activated.connect(self._on_voice_chosen)
        self.device_combo.activated.connect(self._on_device_chosen)
        self.precision_combo.activated.connect(self._on_precision_chosen)
        self.transport.positionChanged.connect(self.mel_plot.set_playhead)

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        m = self.menuBar().addMenu("&File")
        action(m, "&Open text…", self._open_text_dialog, QKeySequence.StandardKey.Open)
        action(m, "&Save text…", self._save_text_dialog, QKeySequence.StandardKey.Save)
        m.addSeparator()
        self.save_audio_action = action(m, "Save &audio as WAV/FLAC…", self._save_audio_dialog, "Ctrl+Shift+S")
        action(m, "Save &plots as PNG…", self._save_plots_dialog)
        m.addSeparator()
        action(m, "&Export phrases…", self.show_export_dialog, "Ctrl+E")
        action(m, "&Import voice…", self.show_import_dialog)
        m.addSeparator()
        action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        m = self.menuBar().addMenu("&Edit")
        action(m, "&Undo", self.editor.undo, QKeySequence.StandardKey.Undo)
        action(m, "&Redo", self.editor.redo, QKeySequence.StandardKey.Redo)
        m = self.menuBar().addMenu("&Speech")
        action(m, "&Speak", self.speak)   # Ctrl+Enter lives on the editor (and works from it)
        action(m, "S&top", self.stop, "Esc")
        action(m, "&Play / Pause", self.transport._toggle, "Ctrl+P")
        action(m, "&Replay", self.transport._replay, "Ctrl+R")

    def _connect_worker(self) -> None:
        w = self.client.worker
        w.loadProgress.connect(self._on_load_progress)
        w.voiceLoaded.connect(self._on_voice_loaded)
        w.loadFailed.connect(self._on_load_failed)
        w.sentenceReady.connect(self._on_sentence)
        w.speakFinished.connect(self._on_speak_finished)
        w.speakCancelled.connect(self._on_speak_cancelled)
        w.speakFailed.connect(self._on_speak_failed)
        w.exportProgress.connect(self._on_export_progress)
        w.exportFinished.connect(self._on_export_finished)
        w.exportCancelled.connect(self._on_export_cancelled)
        w.exportFailed.connect(self._on_export_failed)

    # ------------------------------------------------------------------ settings
    def _restore(self, voice, device, precision) -> None:
        s = self.settings
        geometry = s.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.options.load(s)
        self.transport.set_volume(s.get("volume"))
        self._select(self.device_combo, device or s.get("device"))
        self._select(self.precision_combo, precision or s.get("precision"))
        self.refresh_voices()
        wanted = voice or s.get("voice") or None
        if wanted and not voice and not Path(wanted).is_dir():
            wanted = None       # a saved voice that has since been deleted: take the default
        if wanted is None and self.voice_combo.count() == 0:
            self.voice_label.setText("No voice installed")
            self.show_message("No voice is installed: use Import… to import NVIDIA checkpoints.")
            return
        self.editor.setPlainText(SAMPLE_TEXT)
        self.load_voice(wanted)

    def save_settings(self) -> None:
        s = self.settings
        self.options.save(s)
        s.set("volume", self.transport.volume.value() / 100)
        s.set("device", self.device())
        s.set("precision", self.precision())
        if self.voice_info is not None:
            s.set("voice", str(self.voice_info.path))
        s.set_geometry(self.saveGeometry())
        s.sync()

    @staticmethod
    def _select(combo: QComboBox, value) -> None:
        i = combo.findData(value)
        if i >= 0:
            combo.setCurrentIndex(i)

    def device(self) -> str:
        return self.device_combo.currentData()

    def precision(self) -> str:
        return self.precision_combo.currentData()

    # ------------------------------------------------------------------ messages
    def show_message(self, text: str, ms: int = 8000) -> None:
        self.status.showMessage(text, ms)

    def show_error(self, text: str, title: str = "TTS Desktop") -> None:
        """Status bar plus a non-blocking dialog: the event loop (and playback) keeps running."""
        self.last_error = text
        self.status.showMessage(text, 15000)
        if self._error_box is None:
            self._error_box = QMessageBox(QMessageBox.Icon.Warning, title, text,
                                          QMessageBox.StandardButton.Ok, self)
            self._error_box.setWindowModality(Qt.WindowModality.WindowModal)
        self._error_box.setWindowTitle(title)
        self._error_box.setText(text)
        self._error_box.open()

    # ------------------------------------------------------------------ voices
    def refresh_voices(self) -> None:
        from tts_desktop.voices import list_voices

        current = self.voice_combo.currentData()
        self.voice_combo.clear()
        for v in list_voices():
            self.voice_combo.addItem(f"{v.name} ({v.source})", str(v.path))
            self.voice_combo.setItemData(self.voice_combo.count() - 1,
                                         f"{v.path}\n{v.description}", Qt.ItemDataRole.ToolTipRole)
        self._select(self.voice_combo, current)

    def _show_voice_in_combo(self, path: Path, name: str) -> None:
        i = self.voice_combo.findData(str(path))
        if i < 0:   # a folder given on the command line, outside the voice folders
            self.voice_combo.addItem(f"{name} (folder)", str(path))
            i = self.voice_combo.count() - 1
            self.voice_combo.setItemData(i, str(path), Qt.ItemDataRole.ToolTipRole)
        self.voice_combo.setCurrentIndex(i)

    def load_voice(self, voice: str | None = None) -> None:
        """Load (or reload) a voice with the chosen device and precision, in the worker."""
        device, precision = self.device(), self.precision()
        self._pending_load = (voice, device, precision)
        self._load_id = self.client.load(voice, device, precision)
        self.load_progress.setRange(0, 0)       # busy until the loader reports a fraction
        self.load_progress.setFormat("Loading…")
        self.load_progress.show()
        target = {"cuda": "the GPU", "cpu": "the CPU", "auto": "the best device"}[device]
        self.show_message(f"Loading the voice on {target}"
                          + (f"; '{self.voice_info.name}' keeps serving until it is ready"
                             if self.voice_info else "") + "…", 0)

    def _on_load_progress(self, req_id: int, fraction: float, message: str) -> None:
        if req_id != self._load_id:
            return
        self.load_progress.setRange(0, 100)
        self.load_progress.setValue(round(fraction * 100))
        self.load_progress.setFormat(f"{message} %p%" if message else "%p%")

    def _on_voice_loaded(self, req_id: int, info: VoiceInfo) -> None:
        if req_id != self._load_id:
            return
        self._load_id = None
        self.load_progress.hide()
        self.voice_info = info
        self._show_voice_in_combo(info.path, info.name)
        where = info.device if info.device != "cpu" else "CPU"
        if info.device != "cpu":
            where += f", {info.precision.upper()}"
        self._where = where
        self.voice_label.setText(f"'{info.name}' on {where}")
        self.voice_label.setToolTip(info.note or where)
        self.stats.set_device(where)
        message = f"Voice '{info.name}' ready on {where}"
        if info.requested_device == "auto" and info.device == "cpu" and info.note:
            message += f": {info.note}"
        self.show_message(message)
        self.settings.set("voice", str(info.path))

    def _on_load_failed(self, req_id: int, text: str) -> None:
        if req_id != self._load_id:
            return
        self._load_id = None
        self.load_progress.hide()
        asked = self._pending_load[1] if self._pending_load else "auto"
        # Put the controls back to what is actually serving.
        if self.voice_info is not None:
            self._select(self.device_combo, self.voice_info.requested_device)
            self._select(self.precision_combo, self.voice_info.precision)
            self._show_voice_in_combo(self.voice_info.path, self.voice_info.name)
            keeps = f" '{self.voice_info.name}' keeps serving on {self.voice_info.device.upper() if self.voice_info.device == 'cpu' else self.voice_info.device}."
        else:
            keeps = " No voice is loaded."
        if asked == "cuda" and "GPU" in text:
            text = f"The GPU engine cannot be used: {text}."
        else:
            text = f"Could not load the voice: {text}."
        self.show_error(text + keeps, "Voice not loaded")

    def _on_voice_chosen(self, index: int) -> None:
        path = self.voice_combo.itemData(index)
        if self.voice_info is None or path != str(self.voice_info.path):
            self.load_voice(path)

    def _on_device_chosen(self, _index: int) -> None:
        self.settings.set("device", self.device())
        self.load_voice(str(self.voice_info.path) if self.voice_info else self._voice_to_load())

    def _on_precision_chosen(self, _index: int) -> None:
        self.settings.set("precision", self.precision())
        info = self.voice_info
        if info is not None and info.device == "cpu" and self.device() != "cuda":
            # The NumPy reference always computes in float32; reloading would change nothing.
            why = f" ({info.note})" if info.note and info.requested_device == "auto" else ""
            self.show_error(f"{self.precision().upper()} applies to the GPU engine only. "
                            f"'{info.name}' runs on the CPU{why}, which always computes in FP32; "
                            "it keeps serving unchanged.", "Precision")
            return
        self.load_voice(str(info.path) if info else self._voice_to_load())

    def _voice_to_load(self) -> str | None:
        return self.voice_combo.currentData()

    # ------------------------------------------------------------------ text
    def _update_counts(self) -> None:
        from tts_desktop.text import split_sentences

        text = self.editor.toPlainText()
        try:
            n = len(split_sentences(text)) if text.strip() else 0
        except Exception:  # noqa: BLE001 - a count must never break typing
            n = 0
        self.counts.setText(f"{len(text)} character{'s' * (len(text) != 1)} · "
                            f"{n} sentence{'s' * (n != 1)}")

    def open_text_file(self, path: str) -> bool:
        try:
            text = read_text_file(path)
        except TextFileError as e:
            self.show_error(str(e), "Cannot open file")
            return False
        self.editor.replace_all(text)
        self.settings.set("last_dir", str(Path(path).parent))
        self.show_message(f"Opened {path}")
        return True

    def save_text_to(self, path: str) -> bool:
        try:
            write_text_file(path, self.editor.toPlainText())
        except TextFileError as e:
            self.show_error(str(e), "Cannot save file")
            return False
        self.show_message(f"Saved {path}")
        return True

    def _last_dir(self) -> str:
        return self.settings.get("last_dir") or str(Path.home())

    def _open_text_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open text", self._last_dir(),
                                              "Text files (*.txt *.text *.md);;All files (*)")
        if path:
            self.open_text_file(path)

    def _save_text_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save text", self._last_dir(), "Text files (*.txt)")
        if path:
            self.save_text_to(path if Path(path).suffix else path + ".txt")

    # ------------------------------------------------------------------ speaking
    @property
    def busy(self) -> bool:
        return self._speak_id is not None

    def speak(self) -> None:
        text = self.editor.toPlainText()
        if not text.strip():
            self.show_error("There is nothing to say: the text is empty.", "Speak")
            return
        if self.voice_info is None and self._load_id is None:
            self.show_error("No voice is loaded: choose a voice or import one.", "Speak")
            return
        if self._export_dialog is not None and self._export_dialog.running:
            self.show_error("An export is running: wait for it or cancel it first.", "Speak")
            return
        try:
            options = self.options.options()
        except ValueError as e:
            self.show_error(str(e), "Speak")
            return
        self.player.stop()
        self._clear_utterance()
        self._pause = options.sentence_pause
        self.player.begin(self.voice_info.sample_rate if self.voice_info else 22050)
        self._speak_id = self.client.speak(text, options)   # cancels a running one first
        self.stop_button.setEnabled(True)
        # While another voice builds, the one in use serves; only a first load makes Speak wait.
        self.show_message("Synthesizing…" if self.voice_info is not None
                          else "Synthesizing once the voice has loaded…", 0)

    def stop(self) -> None:
        was_busy = self.busy
        self.client.cancel_speak()
        self._speak_id = None
        self.player.stop()
        self.player.finish()
        self.stop_button.setEnabled(False)
        if was_busy:
            self.show_message("Stopped")

    def _clear_utterance(self) -> None:
        self._plot_jobs.clear()
        self._pieces = []
        self._stages = {}
        self._frames = 0
        # Queued like the sentences' plots (and before them): cleared in the same pass, both
        # plots would repaint together just as the worker starts computing.
        self._plot_jobs.run_later(self.mel_plot.clear)
        self._plot_jobs.run_later(self.alignment_plot.clear)
        self.stats.clear()
        if self.voice_info:
            self.stats.set_device(self._where)

    def current_audio(self) -> np.ndarray:
        """The utterance so far: sentences joined with their pauses, as playback has it."""
        sr = self.voice_info.sample_rate if self.voice_info else 22050
        return join_sentences(self._pieces, sr, self._pause)

    def _on_sentence(self, req_id: int, s) -> None:
        if req_id != self._speak_id or self.voice_info is None:
            return
        from tts_desktop.text import SYMBOLS

        sr, hop = self.voice_info.sample_rate, self.voice_info.hop_length
        if not self._pieces:
            self.player.sample_rate = sr   # the voice may have loaded after Speak was pressed
        gap = int(round(self._pause * sr)) if self._pieces else 0
        if gap:
            self.player.append(np.zeros(gap, np.float32))
        start = (self.player.buffer.length) / sr
        self.player.append(s.audio)
        self._pieces.append(np.asarray(s.audio, np.float32))
        self._frames += s.frames
        for k, v in s.timings.items():
            self._stages[k] = self._stages.get(k, 0.0) + v
        self.stats.update_running(len(self._pieces), self._frames, self.player.duration(), self._stages)
        if s.reached_max_steps:
            self.show_message(f"Sentence {s.index + 1} never reached its stop token and was cut "
                              f"at {s.frames} frames.")
        if len(self._pieces) == 1 and self.player.available and self.player.state == "stopped":
            self.transport.play()      # the first sentence plays while the rest are synthesized
        symbols = [SYMBOLS[i] if 0 <= i < len(SYMBOLS) else "?" for i in s.ids]
        n = len(self._pieces)
        # Each plot repaints in its own event-loop pass: painted together they stall the UI
        # thread for ~50 ms per sentence on a software-rendered screen while the worker computes.
        self._plot_jobs.run_later(lambda: self.mel_plot.add_sentence(s.mel, start, hop / sr))
        self._plot_jobs.run_later(lambda: self.alignment_plot.add_sentence(
            s.alignment, symbols, start, hop / sr))
        self._plot_jobs.run_later(lambda: self.sentenceShown.emit(n))

    def _on_speak_finished(self, req_id: int, summary) -> None:
        if req_id != self._speak_id:
            return
        self._speak_id = None
        self.client.speaking = None
        self.player.finish()
        self.stop_button.setEnabled(self.player.state != "stopped")
        rtf = summary.audio_seconds / summary.latency if summary.latency > 0 else 0.0
        self.stats.update_final(summary.latency, summary.first_latency, rtf)
        self.show_message(f"Spoke {summary.sentences} sentence(s): {summary.audio_seconds:.2f} s of "
                          f"audio in {summary.latency:.2f} s (RTF {rtf:.2f})", 0)

        # After the last sentence's plots, in the same queue, each half of the history plot in its
        # own pass. The signal is a job of its own, a frame later: by then the history has been
        # painted (while the worker is idle).
        self._plot_jobs.run_later(lambda: self.history_plot.add_latency(summary.latency,
                                                                        summary.first_latency))
        self._plot_jobs.run_later(lambda: self.history_plot.add_rtf(rtf))
        self._plot_jobs.run_later(self.utteranceFinished.emit)

    def _on_speak_cancelled(self, req_id: int) -> None:
        # Stop already updated the window; this only says the worker has let go of the request.
        self.speakCancelAcknowledged.emit()

    def _on_speak_failed(self, req_id: int, text: str) -> None:
        if req_id != self._speak_id:
            return
        self._speak_id = None
        self.client.speaking = None
        self.player.finish()
        self.stop_button.setEnabled(False)
        self.show_error(f"Synthesis failed: {text}", "Speak")
        self.utteranceFinished.emit()

    # ------------------------------------------------------------------ saving
    def save_audio_to(self, path: str) -> bool:
        from tts_desktop.audio import write_audio

        audio = self.current_audio()
        if audio.size == 0:
            self.show_error("There is no audio to save yet: press Speak first.", "Save audio")
            return False
        try:
            write_audio(path, audio, self.voice_info.sample_rate)
        except Exception as e:  # noqa: BLE001 - AudioFileError, full disk, bad name
            self.show_error(str(e), "Save audio")
            return False
        self.show_message(f"Saved {path}")
        return True

    def save_plots_to(self, path: str) -> bool:
        if not self.plots.grab().save(path, "PNG"):
            self.show_error(f"cannot save {path}", "Save plots")
            return False
        self.show_message(f"Saved {path}")
        return True

    def _save_audio_dialog(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Save audio", self._last_dir(),
                                                   "WAV (*.wav);;FLAC (*.flac)")
        if path:
            if Path(path).suffix.lower() not in (".wav", ".flac"):
                path += ".flac" if "FLAC" in chosen else ".wav"
            self.save_audio_to(path)

    def _save_plots_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save plots", self._last_dir(), "PNG image (*.png)")
        if path:
            self.save_plots_to(path if path.lower().endswith(".png") else path + ".png")

    # ------------------------------------------------------------------ dialogs
    def show_import_dialog(self) -> ImportDialog:
        dialog = ImportDialog(self)
        dialog.imported.connect(self._on_imported)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _on_imported(self, path: str) -> None:
        self.refresh_voices()
        self.load_voice(path)

    def show_export_dialog(self) -> ExportDialog:
        if self._export_dialog is None:
            self._export_dialog = ExportDialog(self, self._last_dir())
            self._export_dialog.startRequested.connect(self._start_export)
            self._export_dialog.cancelRequested.connect(self.client.cancel_export)
        self._export_dialog.show()
        self._export_dialog.raise_()
        return self._export_dialog

    def _start_export(self, lines: list, out_dir: str, subtype: str, suffix: str) -> None:
        if self.voice_info is None and self._load_id is None:
            self._export_dialog.on_failed("no voice is loaded: choose or import a voice first")
            return
        self.stop()   # the worker is serial: a running Speak would hold the export up
        try:
            options = self.options.options()
        except ValueError as e:
            self._export_dialog.on_failed(str(e))
            return
        self.speak_button.setEnabled(False)
        self.client.export(lines, Path(out_dir), options, subtype, suffix)

    def _export_ended(self) -> None:
        self.speak_button.setEnabled(True)
        self.client.exporting = None

    def _on_export_progress(self, _id: int, done: int, total: int) -> None:
        if self._export_dialog:
            self._export_dialog.on_progress(done, total)

    def _on_export_finished(self, _id: int, report) -> None:
        self._export_ended()
        if self._export_dialog:
            self._export_dialog.on_finished(report)
        self.show_message(f"Exported {len(report.written)} file(s)"
                          + (f", {len(report.failed)} line(s) failed" if report.failed else ""))
        self.exportEnded.emit("finished")

    def _on_export_cancelled(self, _id: int) -> None:
        self._export_ended()
        if self._export_dialog:
            self._export_dialog.on_cancelled()
        self.exportEnded.emit("cancelled")

    def _on_export_failed(self, _id: int, text: str) -> None:
        self._export_ended()
        if self._export_dialog:
            self._export_dialog.on_failed(text)
        self.show_error(f"Export failed: {text}", "Export")
        self.exportEnded.emit("failed")

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event) -> None:
        self.save_settings()
        self.player.stop()
        self.client.cancel_speak()
        self.client.cancel_export()
        # A running stage finishes before the worker notices the cancel; waiting keeps Qt from
        # destroying a running thread. A voice build stops at its next step and is waited for.
        self.client.shutdown()
        super().closeEvent(event)
