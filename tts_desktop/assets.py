"""Where the files that ship beside the code are: the CUDA sources (`kernels/`) and the bundled
voices and phrases (`resources/`).

A checkout (or an editable install) has them at the repository root, beside the package; a wheel
carries them inside it as `tts_desktop/kernels/` and `tts_desktop/resources/` (setup.py copies them
in at build time).
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """`tts_desktop/<name>/` inside an installed wheel, else `<name>/` at the repository root."""
    packaged = _PKG / name
    return packaged if packaged.is_dir() else _PKG.parent / name


def resources_dir() -> Path:
    return shipped_dir("resources")
