"""Where the files that ship beside the code are: bundled voices and phrases (`resources/`).

A checkout (or an editable install) has them at the repository root, beside the package; a wheel
carries them inside it as `tts_desktop/resources/` (setup.py copies them in at build time).
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resources_dir() -> Path:
    packaged = _PKG / "resources"
    return packaged if packaged.is_dir() else _PKG.parent / "resources"
