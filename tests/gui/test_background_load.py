"""A voice being loaded (a GPU engine being built, in real use) builds on a thread of its own: the
voice in use keeps serving until the new one is swapped in. The build is made slow here by holding
the backend factory at a gate the test opens, so "during the build" is certain, not a race."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread

from conftest import short_frames


class GatedBuilds:
    """From `arm()` on, every CpuBackend built waits (on the build thread) until the test opens
    `gate`; `started` says one is waiting, `built` lists the ones finished."""

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.started, self.gate, self.built = threading.Event(), threading.Event(), []

    def arm(self) -> None:
        import tts_desktop.backends as backends

        started, gate, built = self.started, self.gate, self.built

        class GatedCpuBackend(backends.CpuBackend):
            def __init__(self, *args, **kwargs):
                started.set()
                if not gate.wait(60):
                    raise TimeoutError("the test never opened the gate")
                super().__init__(*args, **kwargs)
                built.append(self)

        self.monkeypatch.setattr(backends, "CpuBackend", GatedCpuBackend)


@pytest.fixture
def gated_builds(monkeypatch):
    builds = GatedBuilds(monkeypatch)
    yield builds
    builds.gate.set()      # never leave a build thread waiting


def _count_calls(backend, log: list, name: str) -> None:
    """Log (name, the QThread it ran on) for every call of the backend."""
    real = backend.synthesize_ids

    def counted(*args, **kwargs):
        log.append((name, QThread.currentThread()))
        return real(*args, **kwargs)

    backend.synthesize_ids = counted


def test_speak_during_a_build_is_served_by_the_current_voice_then_the_new_one_takes_over(
        make_window, qtbot, gated_builds):
    started, gate, built = gated_builds.started, gated_builds.gate, gated_builds.built
    w = make_window()
    gated_builds.arm()
    short_frames(w, 8)
    old = w.client.worker.voice
    calls: list = []
    _count_calls(old.backend, calls, "old")

    w.load_voice(str(old.path))                  # e.g. a device switch: a new backend is built
    assert started.wait(30), "the build never started"
    assert w.load_progress.isVisible()
    assert "keeps serving until it is ready" in w.status.currentMessage()

    w.editor.setPlainText("Served meanwhile. By the voice in use.")
    with qtbot.waitSignal(w.utteranceFinished, timeout=60000):
        w.speak()
    assert w.status.currentMessage().startswith("Spoke 2 sentence(s)")
    assert [who for who, _ in calls] == ["old", "old"]
    assert not built and not gate.is_set()       # answered while the build was still held
    assert w.client.worker.voice is old and w._load_id is not None and w.load_progress.isVisible()

    gate.set()
    qtbot.waitUntil(lambda: w._load_id is None, timeout=60000)
    new = w.client.worker.voice
    assert new is not old and built == [new.backend]
    assert not w.load_progress.isVisible() and w.voice_info.path == old.path
    _count_calls(new.backend, calls, "new")
    w.editor.setPlainText("Now the new one.")
    with qtbot.waitSignal(w.utteranceFinished, timeout=60000):
        w.speak()
    assert [who for who, _ in calls] == ["old", "old", "new"]
    # Both were served on the worker's own thread, never on the build thread.
    assert all(thread is w.client.thread for _, thread in calls)


def test_speak_before_the_first_voice_has_loaded_waits_for_it(make_window, qtbot, gated_builds):
    started, gate, built = gated_builds.started, gated_builds.gate, gated_builds.built
    gated_builds.arm()
    w = make_window(wait=False)
    assert started.wait(30)
    short_frames(w, 8)
    w.editor.setPlainText("Waiting for the voice.")
    finished = []
    w.utteranceFinished.connect(lambda: finished.append(1))
    w.speak()
    assert w.status.currentMessage() == "Synthesizing once the voice has loaded…"
    qtbot.wait(300)
    assert not finished and w.voice_info is None      # nothing to serve it yet: it waits
    gate.set()
    qtbot.waitUntil(lambda: bool(finished), timeout=60000)
    assert w.voice_info is not None and built and len(w._pieces) == 1 and not w.last_error


def test_only_the_latest_of_several_loads_asked_for_during_a_build_is_swapped_in(
        make_window, qtbot, gated_builds, voice_dir):
    started, gate, built = gated_builds.started, gated_builds.gate, gated_builds.built
    w = make_window()
    gated_builds.arm()
    old = w.client.worker.voice
    loaded = []
    w.client.worker.voiceLoaded.connect(lambda req_id, info: loaded.append(req_id))
    w.load_voice(str(voice_dir))
    assert started.wait(30)
    w.load_voice(str(voice_dir))                 # both queue behind the running build;
    w.load_voice(str(voice_dir))                 # only this last one is built next
    gate.set()
    qtbot.waitUntil(lambda: w._load_id is None, timeout=60000)
    qtbot.wait(200)
    assert loaded == [w.client._next_id]          # the first build's result was dropped, unused
    assert len(built) == 2 and w.client.worker.voice.backend is built[-1]
    assert w.client.worker.voice is not old


def test_closing_the_window_stops_a_running_build_at_its_next_step_and_waits_for_it(
        make_window, qtbot, monkeypatch):
    """A build reports progress between its steps (packing, each kernel compile); once the window
    closes, the next report ends the build, and close returns with no build thread left running
    (none is cut off inside NVRTC at exit) and nothing swapped in."""
    import time

    import tts_desktop.api as api

    w = make_window()
    steps, started = [], threading.Event()

    def slow_run(self, progress=None):
        started.set()
        for i in range(600):                   # 60 s of 0.1 s steps unless stopped
            progress(i / 600, f"step {i}")
            steps.append(i)
            time.sleep(0.1)
        raise AssertionError("the build was never stopped")

    monkeypatch.setattr(api.VoiceLoad, "run", slow_run)
    loaded = []
    w.client.worker.voiceLoaded.connect(lambda req_id, info: loaded.append(req_id))
    w.load_voice(str(w.client.worker.voice.path))
    assert started.wait(30)
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=10000)
    thread = w.client.worker._build_thread
    assert thread is not None and thread.is_alive()
    t0 = time.perf_counter()
    w.close()
    closed_in = time.perf_counter() - t0
    assert not thread.is_alive(), "close returned with the build still running"
    assert closed_in < 5, closed_in              # one 0.1 s step, not the 60 s build
    assert len(steps) < 100 and not loaded


def test_closing_while_a_build_thread_is_being_started_stops_cleanly(make_window, qtbot, monkeypatch):
    """The close can land between the build thread's creation and its start (seen in CI: the window
    closed as an imported voice began to load). closeEvent must neither raise ('cannot join thread
    before it is started') nor leave the worker thread running; the build that was starting runs
    to its first progress report and stops there."""
    import time

    import tts_desktop.api as api
    import tts_desktop.gui.worker as worker_mod

    w = make_window()
    in_start, closed = threading.Event(), threading.Event()
    real_thread = worker_mod.threading.Thread

    class SlowStart(real_thread):
        def start(self):
            if self.name.startswith("voice-build"):
                in_start.set()
                closed.wait(0.5)      # the window closes now, on the GUI thread
            super().start()

    steps = []

    def run(self, progress=None):
        for i in range(100):
            progress(i / 100, f"step {i}")
            steps.append(i)
            time.sleep(0.05)
        raise AssertionError("the build was never stopped")

    monkeypatch.setattr(worker_mod.threading, "Thread", SlowStart)
    monkeypatch.setattr(api.VoiceLoad, "run", run)
    w.load_voice(str(w.client.worker.voice.path))
    assert in_start.wait(30)
    w.close()                         # raised RuntimeError from closeEvent before the fix
    closed.set()
    assert not w.client.thread.isRunning()
    thread = w.client.worker._build_thread
    assert thread is None or not thread.is_alive()
    assert len(steps) <= 1


def test_a_cancelled_build_is_not_taken_for_a_gpu_failure(monkeypatch, voice_dir):
    """BackendBuild falls back to the CPU when the GPU engine fails ('auto'); the stop at window
    close (BuildCancelled, raised from the progress callback inside the engine build) must pass
    through that fallback instead of starting a CPU build."""
    import tts_desktop.engine.build as engine_build
    from tts_desktop.backends import BackendBuild
    from tts_desktop.gui.worker import BuildCancelled
    from tts_desktop.model.voice_files import load_voice

    def get_engine(*args, progress=None, **kwargs):
        progress(0.5, "compiling decoder.cu for sm_90")
        raise AssertionError("the build went on after the stop")

    monkeypatch.setattr(engine_build, "get_engine", get_engine)
    build = BackendBuild("cpu")
    build.device, build._ctx = "auto", type("Ctx", (), {"name": "GPU", "arch": "sm_90"})()

    def progress(fraction, message):
        raise BuildCancelled

    with pytest.raises(BuildCancelled):
        build.run(voice_dir, *load_voice(voice_dir), progress=progress)
    assert build._backend is None          # no CPU fallback was built
