"""Where voices live and how a name or a path becomes a voice folder.

Two places: voices bundled with the app (`resources/voices/`: tts_desktop.assets) and the user's
voice folder (`$TTS_DESKTOP_VOICES`, else `$XDG_DATA_HOME/tts-desktop/voices`, else
`~/.local/share/tts-desktop/voices`), where `tts-desktop import` and downloads put new voices.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tts_desktop.assets import resources_dir
from tts_desktop.model.voice_files import VoiceError

DEFAULT_VOICE = "demo"
VOICE_FILE = "voice.json"


def bundled_voices_dir() -> Path:
    return resources_dir() / "voices"


def user_voices_dir() -> Path:
    env = os.environ.get("TTS_DESKTOP_VOICES")
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "tts-desktop" / "voices"


@dataclass(frozen=True)
class VoiceEntry:
    name: str
    path: Path
    source: str            # "bundled" or "user"
    size_bytes: int
    precision: str         # dtype of the stored weights, e.g. float16
    provenance: dict

    @property
    def description(self) -> str:
        p = self.provenance
        if "corpus" in p:
            return f"trained on {p['corpus']}"
        files = p.get("tacotron2", {}).get("file"), p.get("waveglow", {}).get("file")
        if any(files):
            return "imported from " + " + ".join(f for f in files if f)
        return ""


def _is_voice(folder: Path) -> bool:
    return (folder / VOICE_FILE).is_file()


def _entry(folder: Path, source: str) -> VoiceEntry | None:
    try:
        meta = json.loads((folder / VOICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return VoiceEntry(name=str(meta.get("name", folder.name)), path=folder, source=source,
                      size_bytes=size, precision=str(meta.get("weights_dtype", "float32")),
                      provenance=dict(meta.get("provenance", {})))


def list_voices() -> list[VoiceEntry]:
    """Every readable voice, bundled first, each group sorted by folder name."""
    found = []
    for source, root in (("bundled", bundled_voices_dir()), ("user", user_voices_dir())):
        if root.is_dir():
            # dot-folders are staging areas of writes in progress (see voice_files.save_voice)
            folders = (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_voice(p))
            for folder in sorted(folders):
                entry = _entry(folder, source)
                if entry:
                    found.append(entry)
    return found


def find_voice(voice: str | Path | None = None) -> Path:
    """A voice folder from a path, a folder name or a voice name; None means the default voice."""
    if voice is not None:
        path = Path(voice).expanduser()
        if path.is_dir():
            if not _is_voice(path):
                raise VoiceError(f"{path} is not a voice folder: it has no {VOICE_FILE}")
            return path
        if path.exists():
            raise VoiceError(f"{path} is a file, not a voice folder")
    voices = list_voices()
    if voice is None:
        for v in voices:
            if v.path.name == DEFAULT_VOICE:
                return v.path
        if voices:
            return voices[0].path
        raise VoiceError("no voice is installed: import NVIDIA checkpoints with "
                         "'tts-desktop import --tacotron2 T.pt --waveglow W.pt -o VOICE_DIR'")
    for v in voices:
        if str(voice) in (v.path.name, v.name):
            return v.path
    known = ", ".join(sorted({v.path.name for v in voices})) or "none installed"
    raise VoiceError(f"no voice named or found at {str(voice)!r} (voices: {known})")
