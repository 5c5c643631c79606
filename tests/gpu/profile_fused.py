"""One FP16 WaveGlow inference at the benchmark size (580 frames, batch 1, NVIDIA's 256 channels,
random weights), for a profiler to pick kernels from, e.g. the fused WN layer's 30th launch:

    ncu --clock-control none -k regex:wg_layer_fused --launch-skip 30 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats --section SchedulerStats \\
        python3 tests/gpu/profile_fused.py [--groups 1|2]

--gemm-gate 0|1 picks cuBLAS or wg_gemm_gate for the layer GEMM (default: the engine's choice),
--batch N runs N items of --frames each (7 x 580 is the size of one batch-32 WaveGlow call).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import random_waveglow_weights  # noqa: E402

from tts_desktop.engine.runtime import GpuContext  # noqa: E402
from tts_desktop.engine.waveglow import PackedWaveGlow, WaveGlowGpu  # noqa: E402
from tts_desktop.model.config import WaveGlowConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=None)
    ap.add_argument("--frames", type=int, default=580)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--gemm-gate", type=int, default=None)
    args = ap.parse_args()
    ctx = GpuContext()
    rng = np.random.default_rng(0)
    cfg = WaveGlowConfig()
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, random_waveglow_weights(cfg, rng), fp16=True),
                     fused_groups=args.groups, gemm_gate=None if args.gemm_gate is None else bool(args.gemm_gate))
    mel = ctx.to_device(rng.standard_normal((args.batch, 80, args.frames)).astype(np.float32))
    wg.infer(mel, [args.frames] * args.batch, sigma=0.6, seed=1)
    ctx.synchronize()
    print(f"fused groups {wg.fused_groups}, rows {wg.fused_rows}, shared memory {wg.fused_smem} B, "
          f"wg_gemm_gate {wg.gemm_gate}, cond folded {wg.fold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
