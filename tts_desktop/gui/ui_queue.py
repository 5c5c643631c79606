"""Spread UI work over event-loop passes, one job per frame, in order.

Qt paints every widget made dirty before a paint together. When a sentence arrives, the mel and
alignment plots (and at the end the history plot) all change; painted together on a
software-rendered screen, while the worker thread competes for the CPU and the GIL, that is a
~50 ms stall. Queued here, each job gets its own paint, and input and timers get their turn in
between. Jobs keep their order, so "utterance finished" still comes after the last sentence's
plots.

Jobs are a frame apart, not merely one pass: Qt paints a widget's update a few milliseconds after
it was asked for (the platform's update timer, 5 ms by default; a display's frame callback on
Wayland), so a job run at once would land in the previous job's paint.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from PySide6.QtCore import QObject, QTimer

from tts_desktop.gui.ui_busy import UI_BUSY

FRAME_MS = 16   # one frame at 60 Hz: longer than Qt's update delay, unnoticeable as latency


class UiQueue(QObject):
    def __init__(self, parent: QObject | None = None, gap_ms: int = FRAME_MS) -> None:
        super().__init__(parent)
        self._jobs: deque[Callable[[], None]] = deque()
        self._gap = gap_ms / 1000
        self._last = -float("inf")      # when the previous job ran (time.monotonic)
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self._run_one)

    def run_later(self, job: Callable[[], None]) -> None:
        self._jobs.append(job)
        if not self._timer.isActive():
            self._schedule()

    def clear(self) -> None:
        self._jobs.clear()

    def __len__(self) -> int:
        return len(self._jobs)

    def _schedule(self) -> None:
        wait = self._last + self._gap - time.monotonic()
        self._timer.start(round(max(0.0, wait) * 1000))

    def _run_one(self) -> None:
        if self._jobs:
            self._last = time.monotonic()
            with UI_BUSY.drawing():     # jobs update plots: the worker pauses meanwhile
                self._jobs.popleft()()
        if self._jobs:
            self._schedule()
