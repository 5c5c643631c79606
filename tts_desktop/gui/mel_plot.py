"""The mel spectrogram of the current utterance, on the audio's own time axis, with a playhead.

Each sentence is its own ImageItem placed at the second its audio starts, so the pauses between
sentences show as gaps and the playhead (driven by the playback position) lines up with what is
heard. Sentences arrive one by one while the rest are still being synthesized.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from tts_desktop.gui.plot_view import PlotView, apply_range_now, plain_axes

COLORMAP = "viridis"
LEVEL_SLACK = 0.02   # fraction of the level span a new sentence may exceed without a re-level


class MelPlot(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.view = PlotView()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.plot = self.view.addPlot(row=0, col=0)
        self.plot.setTitle("Mel spectrogram")
        self.plot.setLabel("bottom", "time (s)")
        self.plot.setLabel("left", "mel band")
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.hideButtons()
        self.cmap = pg.colormap.get(COLORMAP)
        self.lut = self.cmap.getLookupTable(nPts=256)   # shared: one per image costs ~0.5 ms each
        self.colorbar = pg.ColorBarItem(colorMap=self.cmap, interactive=False, width=12,
                                        label="log magnitude")
        plain_axes(self.plot, self.colorbar)
        self.view.addItem(self.colorbar, row=0, col=1)
        self.playhead = pg.InfiniteLine(pos=0, angle=90, movable=False,
                                        pen=pg.mkPen((255, 80, 80), width=2))
        self.playhead.setZValue(10)
        self.plot.addItem(self.playhead)
        self.images: list[pg.ImageItem] = []
        self._lo, self._hi = np.inf, -np.inf
        self.duration = 0.0
        self.clear()

    def clear(self) -> None:
        for item in self.images:
            self.plot.removeItem(item)
        self.images = []
        self._lo, self._hi = np.inf, -np.inf
        self.duration = 0.0
        self.playhead.setValue(0)
        self.plot.setXRange(0, 1, padding=0)
        self.plot.setYRange(0, 80, padding=0)

    def add_sentence(self, mel: np.ndarray, start: float, frame_seconds: float) -> None:
        """mel: (n_mel, T); start: the sentence's first sample on the timeline, in seconds."""
        mel = np.asarray(mel, np.float32)
        n_mel, frames = mel.shape
        widened = self._widen_levels(mel)
        levels = (self._lo, self._hi)
        # Levels given up front: pyqtgraph would otherwise scan the image for auto-levels.
        item = pg.ImageItem(mel, axisOrder="row-major", levels=levels)
        item.setLookupTable(self.lut)
        item.setRect(start, 0.0, frames * frame_seconds, float(n_mel))
        self.plot.addItem(item)
        self.images.append(item)
        if widened:
            # Every image re-renders and the colour bar redraws its axis when levels change:
            # only worth it when they really moved, not for every sentence.
            for im in self.images[:-1]:
                im.setLevels(levels)
            self.colorbar.setLevels(levels)
        self.duration = max(self.duration, start + frames * frame_seconds)
        self.plot.setXRange(0, max(self.duration, 0.1), padding=0.01)
        self.plot.setYRange(0, n_mel, padding=0)
        apply_range_now(self.plot)

    def _widen_levels(self, mel: np.ndarray) -> bool:
        """Robust levels over everything shown so far: one loud frame must not wash out the rest.
        They only ever widen, and only by more than LEVEL_SLACK of their span (True when they did):
        a sentence a hair outside the range is drawn a hair saturated instead."""
        lo, hi = (float(v) for v in np.percentile(mel, [1, 99.5])) if mel.size else (0.0, 1.0)
        if np.isfinite(self._lo):
            slack = LEVEL_SLACK * (self._hi - self._lo)
            if lo >= self._lo - slack and hi <= self._hi + slack:
                return False
        self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)
        if self._hi <= self._lo:
            self._hi = self._lo + 1.0
        return True

    def set_playhead(self, seconds: float) -> None:
        self.playhead.setValue(seconds)
