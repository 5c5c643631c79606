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


def process_umask() -> int:
    """The umask, read without changing it where Linux shows it (os.umask can only be read by
    setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """What open() gives a new file. tempfile makes its files 0o600 and folders 0o700 (right for
    secrets, wrong for a user's WAV files and voices): what it made is given this mode, or the
    folder's (new_dir_mode), before it takes its final name."""
    return 0o666 & ~process_umask()


def new_dir_mode() -> int:
    return 0o777 & ~process_umask()


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary binary file that replaces `path` when the block ends without error. The
    file gets the mode a plain write would leave: the replaced file's, or the umask's."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(tmp, mode)
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
