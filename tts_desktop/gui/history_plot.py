"""Latency and real-time factor of every utterance spoken in this session, newest on the right."""

from __future__ import annotations

import pyqtgraph as pg

from tts_desktop.gui.plot_view import PlotView, apply_range_now, plain_axes

LEFT_AXIS_WIDTH = 44   # pixels: room for labels such as "12.5" next to the axis title
X_BLOCK = 10           # utterance slots the x axis grows by
Y_HEADROOM = 1.15      # the y range ends this far above the highest point


class HistoryPlot(PlotView):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.latency_plot = self.addPlot(row=0, col=0)
        # The series are named in the title, in their colours: a legend box would sit on the curves.
        self.latency_plot.setTitle('Latency: <span style="color:#50a0ff">whole text</span>, '
                                   '<span style="color:#5ac878">first audio</span>')
        self.latency_plot.setLabel("left", "latency (s)")
        self.latency_plot.setLabel("bottom", "utterance #")
        self.latency_plot.showGrid(x=False, y=True, alpha=0.3)
        self.rtf_plot = self.addPlot(row=0, col=1)
        self.rtf_plot.setTitle("Real-time factor (audio s / compute s)")
        self.rtf_plot.setLabel("left", "RTF")
        self.rtf_plot.setLabel("bottom", "utterance #")
        self.rtf_plot.showGrid(x=False, y=True, alpha=0.3)
        for p in (self.latency_plot, self.rtf_plot):
            p.hideButtons()
            p.setMouseEnabled(x=False, y=False)
            # Seconds and ratios read best as plain numbers, never as "(x0.001)" scaled ticks.
            plain_axes(p)
            # A fixed width: otherwise wider tick labels ("0.25" after "1") re-lay the plot out,
            # which repaints it twice more, every axis rebuilt each time.
            p.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self.first_curve = self.latency_plot.plot([], [], pen=pg.mkPen((90, 200, 120), width=2),
                                                  symbol="o", symbolSize=6, symbolBrush=(90, 200, 120))
        self.total_curve = self.latency_plot.plot([], [], pen=pg.mkPen((80, 160, 255), width=2),
                                                  symbol="o", symbolSize=6, symbolBrush=(80, 160, 255))
        self.rtf_curve = self.rtf_plot.plot([], [], pen=pg.mkPen((255, 170, 60), width=2),
                                            symbol="o", symbolSize=6)
        self.latency: list[float] = []
        self.first_latency: list[float] = []
        self.rtf: list[float] = []
        self._slots: dict[object, int] = {}
        for p in (self.latency_plot, self.rtf_plot):
            self._fit_x(p, 0)   # ten empty slots from the start: the first utterance moves no axis

    # The two halves are updated separately so that each repaints on its own (the window queues
    # them as two jobs): together they are one of the longest repaints the window has.
    def add_latency(self, latency: float, first_latency: float) -> None:
        self.latency.append(latency)
        self.first_latency.append(first_latency)
        x = list(range(1, len(self.latency) + 1))
        self.total_curve.setData(x, self.latency)
        self.first_curve.setData(x, self.first_latency)
        self._fit_x(self.latency_plot, len(x))
        # Unchanged ranges cost nothing: pyqtgraph only rebuilds an axis whose range moved.
        self.latency_plot.setYRange(0, max(self.latency) * Y_HEADROOM, padding=0)
        apply_range_now(self.latency_plot)

    def add_rtf(self, rtf: float) -> None:
        self.rtf.append(rtf)
        x = list(range(1, len(self.rtf) + 1))
        self.rtf_curve.setData(x, self.rtf)
        self._fit_x(self.rtf_plot, len(x))
        self.rtf_plot.setYRange(0, max(max(self.rtf), 1e-3) * Y_HEADROOM, padding=0)
        apply_range_now(self.rtf_plot)

    def _fit_x(self, plot, n: int) -> None:
        """The utterance axis spans whole blocks of X_BLOCK slots that fill up from the left, so
        most utterances leave it as it was: an axis whose range changes is rebuilt, with all its
        labels, on the next paint, while the worker may already be computing the next request."""
        slots = X_BLOCK * max(1, -(-n // X_BLOCK))
        if slots == self._slots.get(plot):
            return
        self._slots[plot] = slots
        stride = slots // X_BLOCK   # whole utterance numbers, about ten labels
        plot.setXRange(0.5, slots + 0.5, padding=0)
        plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(1, slots + 1, stride)], []])
