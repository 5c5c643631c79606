"""Latency and real-time factor of every utterance spoken in this session, newest on the right."""

from __future__ import annotations

import pyqtgraph as pg


class HistoryPlot(pg.GraphicsLayoutWidget):
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
            p.getAxis("left").enableAutoSIPrefix(False)
            p.getAxis("bottom").enableAutoSIPrefix(False)
        self.first_curve = self.latency_plot.plot([], [], pen=pg.mkPen((90, 200, 120), width=2),
                                                  symbol="o", symbolSize=6, symbolBrush=(90, 200, 120))
        self.total_curve = self.latency_plot.plot([], [], pen=pg.mkPen((80, 160, 255), width=2),
                                                  symbol="o", symbolSize=6, symbolBrush=(80, 160, 255))
        self.rtf_curve = self.rtf_plot.plot([], [], pen=pg.mkPen((255, 170, 60), width=2),
                                            symbol="o", symbolSize=6)
        self.latency: list[float] = []
        self.first_latency: list[float] = []
        self.rtf: list[float] = []

    def add(self, latency: float, first_latency: float, rtf: float) -> None:
        self.latency.append(latency)
        self.first_latency.append(first_latency)
        self.rtf.append(rtf)
        x = list(range(1, len(self.latency) + 1))
        self.total_curve.setData(x, self.latency)
        self.first_curve.setData(x, self.first_latency)
        self.rtf_curve.setData(x, self.rtf)
        stride = max(1, len(x) // 10)   # whole utterance numbers, at most about ten labels
        ticks = [[(i, str(i)) for i in x if (i - 1) % stride == 0], []]
        for p in (self.latency_plot, self.rtf_plot):
            p.setXRange(0.5, len(x) + 0.5, padding=0)
            p.getAxis("bottom").setTicks(ticks)
        self.latency_plot.setYRange(0, max(self.latency) * 1.15, padding=0)
        self.rtf_plot.setYRange(0, max(max(self.rtf), 1e-3) * 1.15, padding=0)
