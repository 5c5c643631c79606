"""Shared fixtures: paths to ../shared (NVIDIA-produced golden data) and a temporary voice."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helper modules beside this file
from checkpoint_server import serve_checkpoints  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TTS_DESKTOP_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden" / "small"
DATA = SHARED / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared fixtures (../shared beside the checkout) are needed")
    return path


@pytest.fixture(scope="session")
def _empty_bundled_voices(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("no-bundled-voices")


@pytest.fixture(autouse=True)
def _bundled_voices_only_when_asked(request, _empty_bundled_voices, monkeypatch):
    """Tests see an empty bundled-voice folder unless marked `bundled_voice`: the demo voice in
    resources/voices (107 MB, full-size Tacotron2) would otherwise become every test's default
    voice and make each synthesis on two CPU cores take seconds. Subprocess tests (the CLI's)
    name their voice with --voice."""
    if request.node.get_closest_marker("bundled_voice") is None:
        monkeypatch.setattr("tts_desktop.voices.bundled_voices_dir", lambda: _empty_bundled_voices)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(GOLDEN)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA)


@pytest.fixture(scope="session")
def golden(golden_dir):
    import numpy as np

    with np.load(golden_dir / "golden.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def server(golden_dir):
    """A local HTTP server serving the golden checkpoints under NGC's file names."""
    yield from serve_checkpoints(golden_dir)
