"""The pyqtgraph canvas every plot in the window draws on, minus work that only costs UI time.

pyqtgraph's plot parts are QGraphicsWidgets, and Qt repaints every QGraphicsWidget whenever its
window is activated or deactivated, so that palette colours can follow the window's state. Our
plots draw in their own colours and look the same either way, yet opening any dialog (Export,
Import, an error box) used to repaint all three plots at once, tick labels and images included:
tens of milliseconds on the UI thread while the worker competes for the GIL. The canvas keeps
those two events away from its scene; everything else passes through untouched.

`apply_range_now` saves a second repaint after a range change.

`plain_axes` switches off pyqtgraph's automatic SI prefixes: with them on, every range change
re-typesets each axis label as HTML (hidden axes included), about a millisecond a change, several
times for every sentence that arrives. Our values read best as plain numbers anyway.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent

_ACTIVATION = (QEvent.Type.WindowActivate, QEvent.Type.WindowDeactivate)


def plain_axes(*items) -> None:
    """No SI prefix ("x0.001", "k") on any axis of these PlotItems or ColorBarItems."""
    for item in items:
        axes = [item.axis] if isinstance(item, pg.ColorBarItem) else \
            [item.getAxis(side) for side in ("left", "bottom", "right", "top")]
        for axis in axes:
            axis.enableAutoSIPrefix(False)


def apply_range_now(*plots) -> None:
    """Apply the PlotItems' new view ranges at once instead of at their next paint.

    pyqtgraph moves a view to its new range while painting; the items that follow the view (the
    playhead line, images, the scatter points) then ask for a second paint, a frame later. Applied
    here, inside the update, the plot is painted once."""
    for plot in plots:
        plot.getViewBox().prepareForPaint()


class PlotView(pg.GraphicsLayoutWidget):
    def viewportEvent(self, event) -> bool:
        if event.type() in _ACTIVATION:
            return True   # handled: nothing on these plots depends on the window being active
        return super().viewportEvent(event)
