"""The pieces that keep the UI thread responsive while the worker computes (stall_probe.py
measures the whole): job spacing, the worker stepping aside, repaints that are not needed."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QDialog


def test_ui_queue_runs_jobs_in_order_a_gap_apart(qtbot):
    from tts_desktop.gui.ui_queue import UiQueue

    q = UiQueue(gap_ms=30)
    ran = []
    for i in range(3):
        q.run_later(lambda i=i: ran.append((i, time.monotonic())))
    qtbot.waitUntil(lambda: len(ran) == 3, timeout=2000)
    assert [i for i, _ in ran] == [0, 1, 2]
    gaps = [b - a for (_, a), (_, b) in zip(ran, ran[1:])]
    # A coarse timer may fire up to 5% early; without the gap they would be ~0 ms apart.
    assert min(gaps) >= 0.025, gaps      # each job's repaint gets a frame of its own
    q.run_later(lambda: ran.append((3, time.monotonic())))
    q.clear()
    qtbot.wait(80)
    assert len(ran) == 3                 # cleared jobs never run


def test_worker_steps_aside_while_the_ui_paints_and_never_longer_than_the_cap():
    from tts_desktop.gui.ui_busy import UiBusy

    busy = UiBusy()
    cancel = threading.Event()
    check = busy.cancel_check(cancel)
    t0 = time.perf_counter()
    assert check() is False and time.perf_counter() - t0 < 0.01     # idle UI: no wait at all

    waited = []

    def worker():
        t = time.perf_counter()
        busy.step_aside(cap=2.0)
        waited.append(time.perf_counter() - t)

    with busy.drawing():
        with busy.drawing():            # nested stretches: idle only after the outer one
            th = threading.Thread(target=worker)
            th.start()
            time.sleep(0.1)
        time.sleep(0.05)
        assert not waited               # still painting: the worker is still waiting
    th.join(1.0)
    assert waited and 0.14 <= waited[0] < 1.0

    busy.hold()                         # a UI that never lets go cannot stop the worker
    t = time.perf_counter()
    busy.step_aside(cap=0.05)
    assert 0.04 <= time.perf_counter() - t < 0.5
    busy.release()


def test_plots_do_not_repaint_when_a_dialog_takes_the_focus(qtbot):
    import pyqtgraph as pg

    from tts_desktop.gui.plot_view import PlotView

    paints = {}
    views = {"plain": pg.GraphicsLayoutWidget(), "ours": PlotView()}
    for name, view in views.items():
        view.addPlot().plot([1, 2, 3], [3, 1, 2], symbol="o")
        view.resize(400, 200)
        qtbot.addWidget(view)
        view.show()
        view.activateWindow()
        qtbot.waitUntil(view.isActiveWindow, timeout=2000)
        qtbot.wait(50)
        paints[name] = 0
        original = view.paintEvent

        def counting(event, name=name, original=original):
            paints[name] += 1
            original(event)

        view.paintEvent = counting
        dialog = QDialog(view)
        dialog.show()
        qtbot.waitUntil(lambda: not view.isActiveWindow(), timeout=2000)
        qtbot.wait(50)
        dialog.close()
    assert paints["plain"] >= 1          # pyqtgraph alone repaints everything on deactivation
    assert paints["ours"] == 0


def test_mel_levels_only_move_when_a_sentence_falls_well_outside_them(qtbot):
    from tts_desktop.gui.mel_plot import LEVEL_SLACK, MelPlot

    plot = MelPlot()
    qtbot.addWidget(plot)
    rng = np.random.default_rng(0)
    first = rng.normal(0.0, 1.0, (80, 40)).astype(np.float32)
    plot.add_sentence(first, 0.0, 0.01)
    lo, hi = plot._lo, plot._hi
    assert lo == pytest.approx(np.percentile(first, 1)) and hi == pytest.approx(np.percentile(first, 99.5))
    first_levels = plot.images[0].levels.tolist()

    # Its robust range ends just past the current one, within the slack: no re-level.
    inside = first + 0.5 * LEVEL_SLACK * (hi - lo)
    assert np.percentile(inside, 99.5) > hi
    plot.add_sentence(inside, 0.6, 0.01)
    assert (plot._lo, plot._hi) == (lo, hi)
    assert plot.images[0].levels.tolist() == first_levels           # old images untouched
    assert plot.images[1].levels.tolist() == pytest.approx([lo, hi])

    louder = first * 3
    plot.add_sentence(louder, 1.2, 0.01)
    assert plot._hi == pytest.approx(np.percentile(louder, 99.5)) and plot._lo < lo
    for image in plot.images:                                         # all re-levelled together
        assert image.levels.tolist() == pytest.approx([plot._lo, plot._hi])
    assert plot.colorbar.levels() == pytest.approx((plot._lo, plot._hi))


def test_history_axis_grows_by_blocks_of_ten_utterances(qtbot):
    from tts_desktop.gui.history_plot import X_BLOCK, HistoryPlot

    plot = HistoryPlot()
    qtbot.addWidget(plot)
    x_range = lambda p: p.getViewBox().viewRange()[0]  # noqa: E731
    assert x_range(plot.latency_plot) == pytest.approx([0.5, X_BLOCK + 0.5])
    for n in range(X_BLOCK):
        plot.add_latency(1.0 + n, 0.2)
        plot.add_rtf(2.0)
    assert x_range(plot.latency_plot) == pytest.approx([0.5, X_BLOCK + 0.5])
    assert x_range(plot.rtf_plot) == pytest.approx([0.5, X_BLOCK + 0.5])
    assert plot.latency_plot.getViewBox().viewRange()[1][1] == pytest.approx(X_BLOCK * 1.15)
    plot.add_latency(0.5, 0.1)
    assert x_range(plot.latency_plot) == pytest.approx([0.5, 2 * X_BLOCK + 0.5])
    assert x_range(plot.rtf_plot) == pytest.approx([0.5, X_BLOCK + 0.5])   # its own utterances
    assert plot.latency == [1.0 + n for n in range(X_BLOCK)] + [0.5]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_compute_threads_get_a_lower_priority_than_the_ui_thread():
    from tts_desktop.gui.priority import COMPUTE_NICE, lower_other_threads, lower_this_thread

    ui = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, ui)
    seen = {}
    go, done = threading.Event(), threading.Event()

    def compute():
        seen["tid"] = threading.get_native_id()
        go.wait(5)
        seen["after_others"] = os.getpriority(os.PRIO_PROCESS, seen["tid"])
        done.set()

    th = threading.Thread(target=compute)
    th.start()
    while "tid" not in seen:
        time.sleep(0.001)
    lower_other_threads()                # from the UI thread: everyone else, not itself
    go.set()
    done.wait(5)
    th.join()
    assert seen["after_others"] >= COMPUTE_NICE
    assert os.getpriority(os.PRIO_PROCESS, ui) == before

    late = {}

    def started_later():
        lower_this_thread()
        late["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    th = threading.Thread(target=started_later)
    th.start()
    th.join()
    assert late["nice"] >= COMPUTE_NICE
