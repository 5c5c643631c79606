"""Shared fixtures: paths to ../shared (NVIDIA-produced golden data) and a temporary voice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TTS_DESKTOP_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden" / "small"
DATA = SHARED / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared fixtures (../shared beside the checkout) are needed")
    return path


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
