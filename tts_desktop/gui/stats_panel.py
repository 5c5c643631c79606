"""Numbers for the last utterance: latency, RTF, frames, audio length and time per stage."""

from __future__ import annotations

from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel

# Stage names as the backends report them, in pipeline order.
STAGES = ("text", "encoder", "decoder", "postnet", "waveglow", "denoiser", "griffin_lim")
_DASH = "–"


class StatsPanel(QGroupBox):
    def __init__(self, parent=None) -> None:
        super().__init__("Last utterance", parent)
        form = QFormLayout(self)
        form.setContentsMargins(8, 4, 8, 4)
        form.setVerticalSpacing(1)
        self.values: dict[str, QLabel] = {}
        rows = [("device", "Device"), ("latency", "Latency (whole text)"),
                ("first_latency", "Latency (first audio)"), ("rtf", "RTF (× real time)"),
                ("frames", "Mel frames"), ("audio", "Audio"), ("sentences", "Sentences")]
        rows += [(f"stage:{s}", f"  {s.replace('_', '-')}") for s in STAGES]
        for key, title in rows:
            label = QLabel(_DASH)
            label.setObjectName(f"stat_{key}")
            self.values[key] = label
            form.addRow(title, label)

    def clear(self) -> None:
        for label in self.values.values():
            label.setText(_DASH)

    def set_device(self, text: str) -> None:
        self.values["device"].setText(text)

    def update_running(self, sentences: int, frames: int, audio_seconds: float,
                       stage_seconds: dict[str, float]) -> None:
        """Fill in what is known while sentences are still arriving."""
        self.values["sentences"].setText(str(sentences))
        self.values["frames"].setText(str(frames))
        self.values["audio"].setText(f"{audio_seconds:.2f} s")
        for s in STAGES:
            v = stage_seconds.get(s)
            self.values[f"stage:{s}"].setText(_DASH if v is None else f"{v * 1000:.0f} ms")

    def update_final(self, latency: float, first_latency: float, rtf: float) -> None:
        self.values["latency"].setText(f"{latency * 1000:.0f} ms")
        self.values["first_latency"].setText(f"{first_latency * 1000:.0f} ms")
        self.values["rtf"].setText(f"{rtf:.2f}")

    def text(self, key: str) -> str:
        return self.values[key].text()
