"""The Advanced panel: vocoder, WaveGlow sigma, denoiser strength, seed, prenet dropout and the
frame cap."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox

from tts_desktop.api import VOCODERS, SynthesisOptions

VOCODER_LABELS = {"waveglow": "WaveGlow", "griffin-lim": "Griffin-Lim"}


class OptionsPanel(QGroupBox):
    def __init__(self, parent=None) -> None:
        super().__init__("Advanced", parent)
        form = QFormLayout(self)
        form.setContentsMargins(8, 4, 8, 4)
        self.vocoder = QComboBox()
        for v in VOCODERS:
            self.vocoder.addItem(VOCODER_LABELS[v], v)
        self.vocoder.setToolTip("WaveGlow: the voice's neural vocoder. Griffin-Lim: phase reconstruction "
                                "from the mel alone: buzzier, but needs no trained vocoder and is quick on a CPU")
        self.vocoder.currentIndexChanged.connect(self._vocoder_changed)
        self.sigma = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.05, value=0.6)
        self.sigma.setToolTip("WaveGlow noise scale: lower is cleaner but flatter (NVIDIA's default 0.6)")
        self.denoise = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1.0, singleStep=0.005, value=0.01)
        self.denoise.setToolTip("Denoiser strength; 0 switches the denoiser off")
        # -1 shows as "random": QSpinBox's special value text keeps the field a plain number.
        self.seed = QSpinBox(minimum=-1, maximum=2**31 - 1, value=-1)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("Seed for prenet dropout and WaveGlow noise; 'random' for a fresh one each time")
        self.prenet_dropout = QCheckBox("Prenet dropout")
        self.prenet_dropout.setChecked(True)
        self.prenet_dropout.setToolTip("NVIDIA keeps dropout on at inference; off makes decoding deterministic")
        self.max_frames = QSpinBox(minimum=0, maximum=10000, value=0, singleStep=100)
        self.max_frames.setSpecialValueText("voice default")
        self.max_frames.setToolTip("Cap on mel frames per sentence (the voice's own cap, 2000 for NVIDIA's, by default)")
        self.early_stop = QCheckBox("Stop at the stop token")
        self.early_stop.setChecked(True)
        self.early_stop.setToolTip("Off: always decode 'Max frames' frames (for voices whose stop token misfires)")
        form.addRow("Vocoder", self.vocoder)
        form.addRow("Sigma", self.sigma)
        form.addRow("Denoiser", self.denoise)
        form.addRow("Seed", self.seed)
        form.addRow(self.prenet_dropout)
        form.addRow("Max frames", self.max_frames)
        form.addRow(self.early_stop)

    def _vocoder_changed(self) -> None:
        # sigma and the denoiser belong to WaveGlow: Griffin-Lim ignores them
        waveglow = self.vocoder.currentData() == "waveglow"
        self.sigma.setEnabled(waveglow)
        self.denoise.setEnabled(waveglow)

    def options(self) -> SynthesisOptions:
        seed, cap = self.seed.value(), self.max_frames.value()
        if not self.early_stop.isChecked() and cap == 0:
            raise ValueError("without the stop token every sentence runs to its frame cap: "
                             "set Max frames in the Advanced panel")
        return SynthesisOptions(sigma=self.sigma.value(), denoise=self.denoise.value(),
                                seed=None if seed < 0 else seed,
                                prenet_dropout=self.prenet_dropout.isChecked(),
                                max_decoder_steps=cap or None,
                                early_stop=self.early_stop.isChecked(), vocoder=self.vocoder.currentData())

    def load(self, settings) -> None:
        index = self.vocoder.findData(settings.get("vocoder"))
        self.vocoder.setCurrentIndex(max(index, 0))   # an unknown value in the file: WaveGlow
        self.sigma.setValue(settings.get("sigma"))
        self.denoise.setValue(settings.get("denoise"))
        self.seed.setValue(settings.get("seed"))
        self.prenet_dropout.setChecked(settings.get("prenet_dropout"))
        self.max_frames.setValue(settings.get("max_frames"))
        self.early_stop.setChecked(settings.get("early_stop"))

    def save(self, settings) -> None:
        settings.set("vocoder", self.vocoder.currentData())
        settings.set("sigma", self.sigma.value())
        settings.set("denoise", self.denoise.value())
        settings.set("seed", self.seed.value())
        settings.set("prenet_dropout", self.prenet_dropout.isChecked())
        settings.set("max_frames", self.max_frames.value())
        settings.set("early_stop", self.early_stop.isChecked())
