"""The window's persistent settings, typed, on top of QSettings.

QSettings hands back strings for ini files and native types for the registry, so every read
goes through a converter with a default; a hand-edited or stale settings file then yields
defaults instead of exceptions.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

ORGANIZATION = "tts-desktop"
APPLICATION = "TTS Desktop"

DEFAULTS = {
    "voice": "",
    "device": "auto",
    "precision": "fp16",
    "vocoder": "waveglow",
    "sigma": 0.6,
    "denoise": 0.01,
    "seed": -1,                 # -1: a fresh seed every time
    "prenet_dropout": True,
    "max_frames": 0,            # 0: the voice's own cap
    "early_stop": True,
    "volume": 0.8,
    "last_dir": "",
}


def default_settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def _to_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


class Settings:
    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else default_settings()

    def get(self, key: str):
        default = DEFAULTS[key]
        raw = self.q.value(key, default)
        try:
            if isinstance(default, bool):
                return _to_bool(raw)
            if isinstance(default, int):
                return int(raw)
            if isinstance(default, float):
                return float(raw)
            return str(raw) if raw is not None else default
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value) -> None:
        if key not in DEFAULTS:
            raise KeyError(key)
        self.q.setValue(key, value)

    def geometry(self):
        return self.q.value("geometry")

    def set_geometry(self, data) -> None:
        self.q.setValue("geometry", data)

    def sync(self) -> None:
        self.q.sync()
