"""Playback controls: Play/Pause, Replay, a position slider, time readout and volume.

Drives an AudioPlayer and polls its position (30 times a second) for the slider and the mel
plot's playhead. Without an audio output the controls are disabled and say why.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from tts_desktop.gui.player import AudioPlayer

SLIDER_STEPS_PER_SECOND = 100


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m)}:{s:05.2f}"


class Transport(QWidget):
    positionChanged = Signal(float)   # seconds, for the playhead

    def __init__(self, player: AudioPlayer, parent=None) -> None:
        super().__init__(parent)
        self.player = player
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("play")
        self.replay_button = QPushButton("Replay")
        self.replay_button.setObjectName("replay")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("position")
        self.time_label = QLabel(_clock(0) + " / " + _clock(0))
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setObjectName("volume")
        self.volume.setRange(0, 100)
        self.volume.setFixedWidth(70)
        self.volume.setToolTip("Volume")
        self.reason_label = QLabel()
        self.reason_label.setObjectName("playbackReason")
        self.reason_label.setStyleSheet("color: #b05000")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.play_button, self.replay_button):
            layout.addWidget(w)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.time_label)
        layout.addWidget(QLabel("Vol"))
        layout.addWidget(self.volume)

        self.play_button.clicked.connect(self._toggle)
        self.replay_button.clicked.connect(self._replay)
        self.slider.sliderMoved.connect(lambda v: self.player.seek(v / SLIDER_STEPS_PER_SECOND))
        self.volume.valueChanged.connect(lambda v: self.player.set_volume(v / 100))
        player.stateChanged.connect(self._on_state)
        self.timer = QTimer(self, interval=33)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._apply_availability()

    def _apply_availability(self) -> None:
        ok = self.player.available
        for w in (self.play_button, self.replay_button, self.slider, self.volume):
            w.setEnabled(ok)
            w.setToolTip("" if ok else f"Playback is unavailable: {self.player.reason}")
        self.reason_label.setText("" if ok else f"No playback: {self.player.reason}")
        self.reason_label.setVisible(not ok)

    def _toggle(self) -> None:
        try:
            self.player.toggle()
        except RuntimeError:
            self._apply_availability()

    def _replay(self) -> None:
        try:
            self.player.replay()
        except RuntimeError:
            self._apply_availability()

    def play(self) -> None:
        if self.player.state != "playing":
            self._toggle()

    def _on_state(self, state: str) -> None:
        self.play_button.setText("Pause" if state == "playing" else "Play")

    def set_volume(self, volume: float) -> None:
        self.volume.setValue(round(volume * 100))
        self.player.set_volume(volume)

    def refresh(self) -> None:
        pos, dur = self.player.position(), self.player.duration()
        self.slider.setRange(0, int(dur * SLIDER_STEPS_PER_SECOND))
        if not self.slider.isSliderDown():
            self.slider.setValue(int(pos * SLIDER_STEPS_PER_SECOND))
        self.time_label.setText(f"{_clock(pos)} / {_clock(dur)}")
        self.positionChanged.emit(pos)
