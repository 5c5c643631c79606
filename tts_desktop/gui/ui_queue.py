"""Spread UI work over event-loop passes, one job per pass, in order.

Qt paints every widget made dirty in one event-loop pass together. When a sentence arrives, the
mel and alignment plots (and at the end the history plot) all change; painted in one pass on a
software-rendered screen, while the worker thread competes for the GIL, that is a ~50 ms stall.
Queued here, each job runs in its own pass, its repaint follows it, and input and timers get
their turn in between. Jobs keep their order, so "utterance finished" still comes after the
last sentence's plots.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from PySide6.QtCore import QObject, QTimer


class UiQueue(QObject):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: deque[Callable[[], None]] = deque()
        self._timer = QTimer(self, singleShot=True, interval=0)
        self._timer.timeout.connect(self._run_one)

    def run_later(self, job: Callable[[], None]) -> None:
        self._jobs.append(job)
        if not self._timer.isActive():
            self._timer.start()

    def clear(self) -> None:
        self._jobs.clear()

    def __len__(self) -> int:
        return len(self._jobs)

    def _run_one(self) -> None:
        if self._jobs:
            self._jobs.popleft()()
        if self._jobs:
            self._timer.start()
