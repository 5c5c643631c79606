"""The worker steps aside while the UI thread paints.

A repaint takes the GIL dozens of times: pyqtgraph is Python calling into Qt and back, and PySide
takes the GIL for every virtual method Qt calls on a widget made from Python, to look for a Python
override (perf shows QWidget::event, paintEvent, QPainter::begin... each waiting in take_gil).
While the worker computes, it wants the GIL back at once: NumPy lets go of it around each small
matrix product of the decoder and the worker takes it again within microseconds, before the woken
UI thread gets to run. So every one of those takes waited, and a 5 ms repaint stretched to 20 ms
and more (40 ms for a dialog's first paint).

The worker checks for cancellation between decoder steps and WaveGlow layers anyway; at those same
points it now also waits, GIL released, while the UI thread is repainting a window
(`PaintsAsBusy`) or updating plots (`drawing`). The UI thread never waits for the worker: it only
flips an event. The wait is capped, so a UI that paints without pause (a window being resized)
slows synthesis down but cannot stop it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from PySide6.QtCore import QEvent, QObject, QTimer

YIELD_CAP = 0.05   # seconds the worker waits at most, per check, for the UI to finish painting


class UiBusy:
    def __init__(self) -> None:
        self._idle = threading.Event()
        self._idle.set()
        self._depth = 0          # touched on the UI thread only

    def hold(self) -> None:
        """UI thread: the worker steps aside from now until the matching `release`."""
        self._depth += 1
        self._idle.clear()

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._idle.set()

    @contextmanager
    def drawing(self) -> Iterator[None]:
        """UI thread: wrap a stretch of drawing (nesting is fine)."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    def step_aside(self, cap: float = YIELD_CAP) -> None:
        """Worker thread: return once the UI is not painting (or after `cap` seconds)."""
        if not self._idle.is_set():
            self._idle.wait(cap)

    def cancel_check(self, cancel: threading.Event) -> Callable[[], bool]:
        """A cancellation check for the synthesis API that also steps aside for the UI."""
        def check() -> bool:
            self.step_aside()
            return cancel.is_set()
        return check


# One UI thread per process, so one instance: the windows and the worker both use it.
UI_BUSY = UiBusy()


class PaintsAsBusy:
    """Mixin for top-level widgets: the worker steps aside while Qt paints the window.

    Qt paints a window and all its dirty children when the window gets an UpdateRequest, so that
    one event covers every repaint after an update. A window's first paint, and any after it was
    covered, comes from an Expose event instead, which goes to the window's QWindow: a small filter
    there holds the worker off until the event loop has finished that pass."""

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.UpdateRequest:
            with UI_BUSY.drawing():
                return super().event(event)
        return super().event(event)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        handle = self.windowHandle()
        if handle is not None and getattr(self, "_expose_gate", None) is None:
            self._expose_gate = _ExposeGate(self)
            handle.installEventFilter(self._expose_gate)


class _ExposeGate(QObject):
    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Expose:
            # The paint runs after this filter returns, inside the same event: hold until the
            # event loop gets back to its timers, which is after the paint.
            UI_BUSY.hold()
            QTimer.singleShot(0, UI_BUSY.release)
        return False
