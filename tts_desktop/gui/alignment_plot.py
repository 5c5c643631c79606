"""Attention alignment: decoder steps across, the input symbols the model read up the side.

Sentences are laid out block-diagonally (each one's steps and symbols after the previous one's),
so a long text shows as one staircase. The symbol axis labels are the model's own input symbols;
how many are labelled depends on how much room there is, so zooming in reveals every character.
Hovering shows the frame, its time on the audio timeline, and the symbol under the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from tts_desktop.gui.plot_view import PlotView, apply_range_now, plain_axes

LABEL_PIXELS = 16   # minimum vertical room per symbol label


@dataclass
class _Block:
    step0: int          # first decoder step of the sentence on the x axis
    steps: int
    sym0: int           # first input symbol of the sentence on the y axis
    symbols: list[str]
    start: float        # seconds on the audio timeline where the sentence starts
    frame_seconds: float
    alignment: np.ndarray   # (steps, symbols)


def _symbol_text(s: str) -> str:
    return "␣" if s == " " else s


class AlignmentPlot(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.view = PlotView()
        self.plot = self.view.addPlot()
        self.plot.setTitle("Attention alignment")
        self.plot.setLabel("bottom", "decoder step (mel frame)")
        self.plot.setLabel("left", "input symbol")
        self.plot.hideButtons()
        plain_axes(self.plot)
        self.cmap = pg.colormap.get("inferno")
        self.lut = self.cmap.getLookupTable(nPts=256)   # shared: one per image costs ~0.5 ms each
        self.readout = QLabel("Hover over the alignment to read frame, time and symbol.")
        self.readout.setObjectName("alignmentReadout")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.readout)
        self.blocks: list[_Block] = []
        self.images: list[pg.ImageItem] = []
        self._ticks: list | None = None
        self.plot.getViewBox().sigRangeChanged.connect(self._update_ticks)
        self.plot.getViewBox().sigResized.connect(self._update_ticks)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse)
        self.clear()

    @property
    def total_steps(self) -> int:
        return self.blocks[-1].step0 + self.blocks[-1].steps if self.blocks else 0

    @property
    def total_symbols(self) -> int:
        return self.blocks[-1].sym0 + len(self.blocks[-1].symbols) if self.blocks else 0

    def clear(self) -> None:
        for item in self.images:
            self.plot.removeItem(item)
        self.images = []
        self.blocks = []
        self.plot.setXRange(0, 1, padding=0)
        self.plot.setYRange(0, 1, padding=0)
        self._update_ticks()

    def add_sentence(self, alignment: np.ndarray, symbols: list[str], start: float,
                     frame_seconds: float) -> None:
        """alignment: (decoder steps, input symbols); symbols: the input symbols as text."""
        alignment = np.asarray(alignment, np.float32)
        steps, n_in = alignment.shape
        block = _Block(self.total_steps, steps, self.total_symbols, list(symbols)[:n_in],
                       start, frame_seconds, alignment)
        # Rows: symbols, columns: steps. Attention weights are probabilities: fixed levels, which
        # also spares pyqtgraph scanning the image for auto-levels.
        item = pg.ImageItem(alignment.T, axisOrder="row-major", levels=(0.0, 1.0))
        item.setLookupTable(self.lut)
        item.setRect(block.step0, block.sym0, steps, n_in)
        self.plot.addItem(item)
        self.images.append(item)
        self.blocks.append(block)
        self.plot.setXRange(0, max(self.total_steps, 1), padding=0.01)
        self.plot.setYRange(0, max(self.total_symbols, 1), padding=0.01)
        self._update_ticks()
        apply_range_now(self.plot)

    def _update_ticks(self, *_) -> None:
        if not self.blocks:
            self._set_ticks(None)
            return
        (y0, y1) = self.plot.getViewBox().viewRange()[1]
        height = max(self.plot.getViewBox().height(), 1.0)
        visible = max(y1 - y0, 1e-6)
        stride = max(1, int(np.ceil(LABEL_PIXELS * visible / height)))
        lo, hi = max(int(y0), 0), min(int(np.ceil(y1)), self.total_symbols)
        ticks = []
        for b in self.blocks:
            for i, s in enumerate(b.symbols):
                y = b.sym0 + i
                if lo <= y < hi and y % stride == 0:
                    ticks.append((y + 0.5, _symbol_text(s)))
        self._set_ticks([ticks, []])

    def _set_ticks(self, ticks) -> None:
        # Range and resize signals call this several times per sentence, mostly with the same
        # labels; setting them anyway makes the axis rebuild its picture on the next paint.
        if ticks != self._ticks:
            self._ticks = ticks
            self.plot.getAxis("left").setTicks(ticks)

    def describe(self, x: float, y: float) -> str | None:
        """The readout for a point in plot coordinates (decoder step, symbol), or None outside."""
        step, sym = int(np.floor(x)), int(np.floor(y))
        for n, b in enumerate(self.blocks):
            if b.step0 <= step < b.step0 + b.steps:
                frame = step - b.step0
                t = b.start + frame * b.frame_seconds
                text = f"sentence {n + 1} · frame {frame} · {t:.2f} s"
                if b.sym0 <= sym < b.sym0 + len(b.symbols):
                    i = sym - b.sym0
                    text += (f" · symbol {i} '{_symbol_text(b.symbols[i])}'"
                             f" · weight {b.alignment[frame, i]:.2f}")
                else:
                    focus = int(np.argmax(b.alignment[frame]))
                    text += f" · attends to symbol {focus} '{_symbol_text(b.symbols[focus])}'"
                return text
        return None

    def _on_mouse(self, pos) -> None:
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            return
        p = vb.mapSceneToView(pos)
        text = self.describe(p.x(), p.y())
        if text:
            self.readout.setText(text)
