"""Hyperparameters of a voice: Tacotron2, WaveGlow and audio, as dataclasses.

Field names follow the keyword arguments of NVIDIA's DeepLearningExamples models
(`Tacotron2(**config)`, `WaveGlow(**config)`), so the `config` dict stored in an NGC / train.py
checkpoint maps onto them one to one. Defaults are NVIDIA's published LJSpeech model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any


def _from_dict(cls, d: dict[str, Any]):
    """Build a dataclass from a dict, ignoring keys it does not know (kept in the caller's JSON)."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Tacotron2Config:
    n_mel_channels: int = 80
    n_symbols: int = 148
    symbols_embedding_dim: int = 512
    encoder_kernel_size: int = 5
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 512
    attention_rnn_dim: int = 1024
    attention_dim: int = 128
    attention_location_n_filters: int = 32
    attention_location_kernel_size: int = 31
    n_frames_per_step: int = 1
    decoder_rnn_dim: int = 1024
    prenet_dim: int = 256
    max_decoder_steps: int = 2000
    gate_threshold: float = 0.5
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Tacotron2Config":
        return _from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WaveGlowConfig:
    n_mel_channels: int = 80
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    wn_n_layers: int = 8
    wn_kernel_size: int = 3
    wn_n_channels: int = 256

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WaveGlowConfig":
        d = dict(d)
        wn = d.pop("WN_config", None)  # NVIDIA nests the WaveNet settings
        if isinstance(wn, dict):
            d.setdefault("wn_n_layers", wn.get("n_layers"))
            d.setdefault("wn_kernel_size", wn.get("kernel_size"))
            d.setdefault("wn_n_channels", wn.get("n_channels"))
        return _from_dict(cls, {k: v for k, v in d.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AudioConfig:
    sampling_rate: int = 22050
    filter_length: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    mel_fmin: float = 0.0
    mel_fmax: float = 8000.0
    max_wav_value: float = 32768.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AudioConfig":
        return _from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VoiceConfig:
    """Everything in a voice folder's `voice.json` besides the weights."""

    name: str
    tacotron2: Tacotron2Config = field(default_factory=Tacotron2Config)
    waveglow: WaveGlowConfig = field(default_factory=WaveGlowConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    symbols: tuple[str, ...] = ()
    text_cleaners: tuple[str, ...] = ("english_cleaners",)
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VoiceConfig":
        return cls(
            name=str(d["name"]),
            tacotron2=Tacotron2Config.from_dict(d.get("tacotron2", {})),
            waveglow=WaveGlowConfig.from_dict(d.get("waveglow", {})),
            audio=AudioConfig.from_dict(d.get("audio", {})),
            symbols=tuple(d.get("symbols", ())),
            text_cleaners=tuple(d.get("text_cleaners", ("english_cleaners",))),
            provenance=dict(d.get("provenance", {})),
            format_version=int(d.get("format_version", 1)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "tacotron2": self.tacotron2.to_dict(),
            "waveglow": self.waveglow.to_dict(),
            "audio": self.audio.to_dict(),
            "symbols": list(self.symbols),
            "text_cleaners": list(self.text_cleaners),
            "provenance": self.provenance,
        }
