"""The decoder loop (chunk mode, NVIDIA's sizes, random weights, T_in 150, forced steps), run twice,
for a profiler to time its kernels inside the loop, e.g. with the caches as the loop leaves them:

    ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum \\
        -k regex:dec_ --launch-skip 400 --launch-count 10 python3 tests/gpu/profile_decoder.py --batch 32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_tacotron2_reference import random_weights  # noqa: E402

from tts_desktop.engine.decoder import GpuDecoder  # noqa: E402
from tts_desktop.engine.runtime import GpuContext  # noqa: E402
from tts_desktop.model.config import Tacotron2Config  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--t-in", type=int, default=150)
    a = ap.parse_args()
    ctx = GpuContext()
    cfg = Tacotron2Config()
    dec = GpuDecoder(ctx, cfg, random_weights(cfg, np.random.default_rng(0)), precision="fp16")
    rng = np.random.default_rng(1)
    mem = rng.standard_normal((a.batch, a.t_in, cfg.encoder_embedding_dim)).astype(np.float32)
    lengths = np.full(a.batch, a.t_in)
    p = dec.plan(a.batch, a.t_in, a.steps, 0, True, 2.0, "chunk", 1, 25)
    for _ in range(2):
        dec.prepare(p, mem, lengths, max_steps=a.steps, dropout=True, seed=5)
        dec.run(p)
        ctx.synchronize()
    print(f"B={a.batch}: {int(p.ints.to_host()[0])} steps, tensor-core LSTMs {dec.tensor_core_lstm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
