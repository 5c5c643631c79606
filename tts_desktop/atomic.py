"""Atomic file writes: a file appears whole under its final name, or not at all.

Data goes to a temporary file in the target's folder, is flushed to disk, then renamed over the
target (rename is atomic within one file system). A full disk, a crash or Ctrl+C mid-write leaves
the previous file (or nothing) in place, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces `path` when the block ends without error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_open(path) as f:
        np.save(f, array)
