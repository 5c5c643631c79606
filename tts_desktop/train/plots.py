"""Alignment pictures for the training log: the first thing to look at in a Tacotron2 run.

A healthy run shows one sharp diagonal (the decoder reading the text left to right); a blurry
or broken one means the attention has not learned yet. matplotlib draws the picture when it is
installed (it is on the GPU machine's image); otherwise a plain grayscale PNG is written with
NumPy and zlib, so the log never depends on a plotting library.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def write_gray_png(path, image: np.ndarray) -> None:
    """image (H, W) in [0, 1], row 0 at the top -> an 8-bit grayscale PNG."""
    pixels = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8 bits, grayscale, no interlace
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def save_alignment(path, alignment: np.ndarray, mel_target: np.ndarray | None = None,
                   mel_predicted: np.ndarray | None = None, title: str = "") -> None:
    """alignment (T_out, T_in) of one utterance; mels (n_mel, T_out), drawn below it if given."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        # decoder steps left to right, text position bottom to top, as the usual plots show it
        write_gray_png(path, alignment.T[::-1] / max(float(alignment.max()), 1e-6))
        return
    panels = [("alignment", alignment.T)]
    panels += [(name, m) for name, m in (("target mel", mel_target), ("predicted mel", mel_predicted)) if m is not None]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), squeeze=False)
    for ax, (name, data) in zip(axes[:, 0], panels):
        im = ax.imshow(data, aspect="auto", origin="lower", interpolation="none")
        ax.set_title(f"{title}  {name}" if title else name)
        fig.colorbar(im, ax=ax)
    axes[-1, 0].set_xlabel("decoder step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
