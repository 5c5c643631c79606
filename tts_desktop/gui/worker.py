"""The synthesis worker: one QObject on one QThread that owns the loaded Voice.

Only this thread ever calls into the Voice, so a GPU voice's CUDA context lives on one thread for
its whole life. Requests arrive as queued signals and run one at a time, in order; results go back
as signals. Cancelling cannot travel as a signal (the worker's event loop is busy running the
request), so every request carries its own `threading.Event`, which the GUI thread sets directly
and synthesis checks between stages and every decoder step.

Loading a voice can take minutes (reading the weights, building a GPU engine), so the worker only
does the quick, device-touching ends of it (`api.VoiceLoad`) and leaves the slow middle, which
needs no device, to a build thread of its own. Meanwhile the voice in use keeps serving Speak and
Export; when the build is done the worker swaps the new voice in, between two requests. Requests
that come before any voice has loaded wait for the first one.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from tts_desktop.api import SynthesisCancelled, SynthesisOptions, Voice, VoiceLoad
from tts_desktop.cli.cmd_export import export_phrases
from tts_desktop.cli.errors import friendly_error
from tts_desktop.gui.priority import lower_other_threads, lower_this_thread
from tts_desktop.gui.ui_busy import UI_BUSY


# A build step (one kernel module's NVRTC run, packing WaveGlow) takes seconds; closing the window
# waits this long for the step in progress, then leaves the (daemon) build thread behind.
BUILD_STOP_WAIT_S = 20.0


class BuildCancelled(BaseException):
    """Raised at a build's next progress report once the window is closing. A BaseException, like
    KeyboardInterrupt: the build's own `except Exception` fallbacks ('auto' falling back to the CPU
    when the GPU engine fails) must not catch it and go on building."""


def describe_error(e: BaseException) -> str:
    """One line a user can act on. Known input errors keep their own message; anything else
    names its type so a bug report still says what happened."""
    message, _ = friendly_error(e)
    return message or f"{type(e).__name__}: {e}"


@dataclass
class LoadRequest:
    id: int
    voice: str | None
    device: str       # "auto", "cpu" or "cuda"
    precision: str    # "fp16" or "fp32"


@dataclass
class SpeakRequest:
    id: int
    text: str
    options: SynthesisOptions
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class ExportRequest:
    id: int
    lines: list[str]
    out_dir: Path
    options: SynthesisOptions
    subtype: str = "pcm16"
    suffix: str = ".wav"
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class VoiceInfo:
    """What the GUI may know about the loaded voice: plain values, no backend objects."""

    name: str
    path: Path
    device: str          # "cpu" or the GPU's name
    note: str            # e.g. why 'auto' fell back to the CPU
    sample_rate: int
    hop_length: int
    requested_device: str
    precision: str


@dataclass(frozen=True)
class SpeakSummary:
    sentences: int
    audio_seconds: float
    latency: float          # text in to the last sentence's audio in host memory
    first_latency: float    # text in to the first sentence's audio (what a listener waits)


class SynthesisWorker(QObject):
    loadStarted = Signal(int)
    loadProgress = Signal(int, float, str)
    voiceLoaded = Signal(int, object)          # VoiceInfo
    loadFailed = Signal(int, str)

    sentenceReady = Signal(int, object)        # SentenceResult
    speakFinished = Signal(int, object)        # SpeakSummary
    speakCancelled = Signal(int)
    speakFailed = Signal(int, str)

    exportProgress = Signal(int, int, int)     # id, lines done, lines total
    exportFinished = Signal(int, object)       # ExportReport
    exportCancelled = Signal(int)
    exportFailed = Signal(int, str)

    # From the build thread to this one (queued): the LoadRequest, its VoiceLoad, an error or None.
    _built = Signal(object, object, object)

    def __init__(self) -> None:
        super().__init__()
        self.voice: Voice | None = None
        self.info: VoiceInfo | None = None
        self._building: LoadRequest | None = None    # the load whose build thread is running
        self._next_load: LoadRequest | None = None   # the latest load asked for meanwhile
        self._waiting: list[SpeakRequest | ExportRequest] = []   # asked for before any voice
        self._closing = threading.Event()       # set from the GUI thread: builds stop at their next step
        self._build_thread: threading.Thread | None = None
        # Publishing a build thread (created and started) and stop_builds reading it are one step
        # each: a close that lands between the thread's creation and its start once found a thread
        # that could not be joined yet, raised in closeEvent and left the worker running.
        self._build_lock = threading.Lock()
        self._built.connect(self._finish_load, Qt.ConnectionType.QueuedConnection)

    @Slot()
    def lower_priority(self) -> None:
        lower_this_thread()   # runs first on the worker's thread (connected to QThread.started)

    @Slot(object)
    def load(self, req: LoadRequest) -> None:
        # One build at a time: a load asked for during a build waits for it, and only the latest
        # such request runs (an earlier one has been superseded in the window already).
        if self._building is not None:
            self._next_load = req
            return
        self._start_load(req)

    def _start_load(self, req: LoadRequest) -> None:
        self._building = req
        self.loadStarted.emit(req.id)
        try:
            # On this thread: finding the folder, and the GPU's status and context if one is wanted
            # (a machine without a usable GPU fails here, at once).
            loading = VoiceLoad(req.voice, device=req.device, precision=req.precision)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message in the window
            self._building = None
            self.loadFailed.emit(req.id, describe_error(e))
            self._after_load()
            return
        with self._build_lock:
            if self._closing.is_set():   # the window is closing: it waits for no new build
                self._building = None
                return
            thread = threading.Thread(target=self._build, args=(req, loading), name=f"voice-build-{req.id}",
                                      daemon=True)
            thread.start()
            self._build_thread = thread

    def _build(self, req: LoadRequest, loading: VoiceLoad) -> None:
        """On the build thread: the weights and the backend's slow part, without the device.
        Closing the window stops a build at its next progress report (between two packing steps
        or two kernel compilations, a few seconds at most) and waits for that (stop_builds), so
        no thread is cut off inside NVRTC at exit. Engine files are written atomically: a build
        stopped before its save leaves nothing behind."""

        def progress(fraction: float, message: str) -> None:
            if self._closing.is_set():
                raise BuildCancelled
            self.loadProgress.emit(req.id, float(fraction), str(message))

        error = None
        try:
            loading.run(progress=progress)
        except BuildCancelled:
            return
        except Exception as e:  # noqa: BLE001
            error = describe_error(e)
        try:
            self._built.emit(req, loading, error)
        except RuntimeError:    # the worker is gone (the window closed meanwhile)
            pass

    @Slot(object, object, object)
    def _finish_load(self, req: LoadRequest, loading: VoiceLoad, error: str | None) -> None:
        # Back on the worker's thread, between two requests. The current voice stays in place until
        # the new one is ready: a failed switch (no GPU, a broken voice folder) leaves the user
        # with the voice that worked.
        self._building = None
        superseded = self._next_load is not None
        if error is None and not superseded:
            try:
                voice = loading.finish()      # the device part, on the thread that will use it
            except Exception as e:  # noqa: BLE001
                error = describe_error(e)
            else:
                self.voice = voice
                self.info = VoiceInfo(name=voice.name, path=Path(voice.path), device=voice.device,
                                      note=voice.device_note, sample_rate=voice.sample_rate,
                                      hop_length=voice.config.audio.hop_length,
                                      requested_device=req.device, precision=req.precision)
                self.voiceLoaded.emit(req.id, self.info)
        if error is not None:
            self.loadFailed.emit(req.id, error)
        self._after_load()

    def _after_load(self) -> None:
        if self._next_load is not None:
            req, self._next_load = self._next_load, None
            self._start_load(req)
            return
        waiting, self._waiting = self._waiting, []
        for req in waiting:     # a voice now, or a message that there is none
            (self.speak if isinstance(req, SpeakRequest) else self.export)(req)

    def stop_builds(self, timeout: float) -> bool:
        """Any thread: stop a running build at its next step and wait up to `timeout` s for it;
        True when no build thread is left running."""
        self._closing.set()
        with self._build_lock:
            thread = self._build_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @Slot(object)
    def speak(self, req: SpeakRequest) -> None:
        if req.cancel.is_set():        # superseded while it waited in the queue
            self.speakCancelled.emit(req.id)
            return
        if self.voice is None:
            if self._building is not None:
                self._waiting.append(req)      # served once the first voice has loaded
                return
            self.speakFailed.emit(req.id, "no voice is loaded: choose or import a voice first")
            return
        t0 = time.perf_counter()
        first = None
        audio_samples = 0
        count = 0
        try:
            for sentence in self.voice.synthesize_stream(req.text, req.options,
                                                         cancel=UI_BUSY.cancel_check(req.cancel)):
                if first is None:
                    first = time.perf_counter() - t0
                audio_samples += len(sentence.audio)
                count += 1
                self.sentenceReady.emit(req.id, sentence)
        except SynthesisCancelled:
            self.speakCancelled.emit(req.id)
            return
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            self.speakFailed.emit(req.id, describe_error(e))
            return
        if req.cancel.is_set():
            self.speakCancelled.emit(req.id)
            return
        latency = time.perf_counter() - t0
        pause = req.options.sentence_pause * max(count - 1, 0)
        self.speakFinished.emit(req.id, SpeakSummary(
            sentences=count, audio_seconds=audio_samples / self.voice.sample_rate + pause,
            latency=latency, first_latency=first or latency))

    @Slot(object)
    def export(self, req: ExportRequest) -> None:
        if self.voice is None:
            if self._building is not None:
                self._waiting.append(req)
                return
            self.exportFailed.emit(req.id, "no voice is loaded: choose or import a voice first")
            return
        try:
            report = export_phrases(self.voice, req.lines, req.out_dir, req.options, req.subtype,
                                    req.suffix, progress=lambda done, total, _n:
                                    self.exportProgress.emit(req.id, done, total),
                                    cancel=UI_BUSY.cancel_check(req.cancel))
        except SynthesisCancelled:
            self.exportCancelled.emit(req.id)
            return
        except Exception as e:  # noqa: BLE001 - e.g. the output folder cannot be created
            self.exportFailed.emit(req.id, describe_error(e))
            return
        self.exportFinished.emit(req.id, report)


UI_SWITCH_INTERVAL = 0.0005   # seconds; Python's default is 0.005


def share_gil_fairly() -> None:
    """Shorten how long a thread waiting for the GIL waits before the holder must give it up.

    Between NumPy calls the worker runs plain Python, and PySide takes the GIL for every Python
    slot, timer and virtual method Qt calls on the UI thread, dozens of times in one repaint. Each
    time, while the worker runs Python, the UI thread waits out the switch interval: with Python's
    5 ms, a 5 ms mel-plot repaint took 186 ms next to a busy Python thread; with 0.5 ms, 22 ms.
    (The worker steps aside for the UI's own repaints, see ui_busy.py; this bounds everything
    else.) The cost is more GIL hand-overs while both threads want it, each a few microseconds; a
    thread that runs alone is never interrupted. Process-wide, so it is set here, where the second
    thread starts, and never raised.
    """
    if sys.getswitchinterval() > UI_SWITCH_INTERVAL:
        sys.setswitchinterval(UI_SWITCH_INTERVAL)


class WorkerClient(QObject):
    """The GUI thread's handle on the worker: starts its thread, numbers requests, cancels them."""

    _load = Signal(object)
    _speak = Signal(object)
    _export = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        share_gil_fairly()
        lower_other_threads()          # the BLAS pool, started with NumPy at the UI's priority
        self.thread = QThread()
        self.thread.setObjectName("synthesis-worker")
        self.worker = SynthesisWorker()
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.lower_priority)
        # Queued: the slots run on the worker's thread, one after another, in request order.
        self._load.connect(self.worker.load)
        self._speak.connect(self.worker.speak)
        self._export.connect(self.worker.export)
        # LowPriority is what Windows and macOS honour; Linux ignores it (see priority.py).
        self.thread.start(QThread.Priority.LowPriority)
        self._next_id = 0
        self.speaking: SpeakRequest | None = None
        self.exporting: ExportRequest | None = None

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def load(self, voice: str | None, device: str, precision: str) -> int:
        req = LoadRequest(self._id(), voice, device, precision)
        self._load.emit(req)
        return req.id

    def speak(self, text: str, options: SynthesisOptions) -> int:
        self.cancel_speak()            # a new Speak supersedes the running one
        req = SpeakRequest(self._id(), text, options)
        self.speaking = req
        self._speak.emit(req)
        return req.id

    def cancel_speak(self) -> None:
        if self.speaking is not None:
            self.speaking.cancel.set()
            self.speaking = None

    def export(self, lines: list[str], out_dir: Path, options: SynthesisOptions,
               subtype: str = "pcm16", suffix: str = ".wav") -> ExportRequest:
        req = ExportRequest(self._id(), lines, Path(out_dir), options, subtype, suffix)
        self.exporting = req
        self._export.emit(req)
        return req

    def cancel_export(self) -> None:
        if self.exporting is not None:
            self.exporting.cancel.set()

    def shutdown(self, wait_ms: int | None = None, build_wait_s: float = BUILD_STOP_WAIT_S) -> bool:
        """Cancel whatever runs, stop a voice build and the thread; True when both ended (the
        worker within wait_ms if given, the build within build_wait_s)."""
        self.cancel_speak()
        self.cancel_export()
        self.worker.stop_builds(0)     # a build stops at its next step while the worker winds down
        self.thread.quit()
        ended = self.thread.wait() if wait_ms is None else self.thread.wait(wait_ms)
        return self.worker.stop_builds(build_wait_s) and ended
