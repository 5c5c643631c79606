"""Audio files through soundfile: WAV (PCM_16 by default, float on request) and FLAC, written atomically.

Writes go through `tts_desktop.atomic`, so a full disk or an interrupted export never leaves a
truncated file behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tts_desktop.atomic import atomic_open

SUBTYPES = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}
FORMATS = {".wav": "WAV", ".flac": "FLAC"}


class AudioFileError(OSError):
    """An audio file could not be written or read; the message says which file and why."""


def to_pcm_range(audio: np.ndarray) -> np.ndarray:
    """Scale float audio into [-1, 1] for integer PCM without ever wrapping around.

    Audio that already fits is left untouched (its loudness is the voice's own); audio that
    overshoots is scaled down by its peak rather than clipped, so nothing distorts or wraps.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (one dimension), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    return audio


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "pcm16") -> Path:
    """Write mono audio to .wav or .flac, atomically. `subtype`: pcm16 (default), pcm24 or float."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioFileError(f"cannot write {path}: use a .wav or .flac file name")
    if subtype not in SUBTYPES:
        raise ValueError(f"unknown sample format {subtype!r}: choose one of {', '.join(SUBTYPES)}")
    if fmt == "FLAC" and subtype == "float":
        raise AudioFileError(f"cannot write {path}: FLAC stores integer samples only (use pcm16 or pcm24)")
    data = to_pcm_range(audio) if subtype != "float" else np.asarray(audio, np.float32)
    try:
        with atomic_open(path) as f:
            sf.write(f, data, sample_rate, subtype=SUBTYPES[subtype], format=fmt)
    except OSError as e:
        raise AudioFileError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a sound file as float32 mono (first channel) and its sample rate."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, OSError, RuntimeError) as e:
        raise AudioFileError(f"cannot read {path}: {e}") from e
    return data[:, 0].copy(), int(sr)
