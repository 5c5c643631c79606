"""Time the GPU decoder per step: whole-loop graph replays (WHILE node, unrolled bodies, chunked
fallback) and each kernel alone (a graph of 50 launches of it), NVIDIA's sizes, T_in = 150.

    python tests/gpu/bench_decoder.py [--steps 200] [--out results.json] [--variants default,nopdl]

Steps are forced (gate threshold 2: never stops; every item capped at --steps), dropout on.
Variants (--variants for FP16, --variants32 for FP32): default (PDL on where the GPU has it, no
explicit trigger), nopdl, minb1 (LSTM registers uncapped: 1 block per SM, 2 waves), pdl_early (PDL, next
kernel triggered right after the wait), pdl_prefetch (PDL + LSTM weight prefetch before the wait).
With PDL the per-kernel graphs overlap one launch's prologue with the previous launch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_tacotron2_reference import random_weights  # noqa: E402

from tts_desktop.engine.decoder import GpuDecoder  # noqa: E402
from tts_desktop.engine.runtime import GpuContext  # noqa: E402
from tts_desktop.model.config import Tacotron2Config  # noqa: E402


def time_ms(ctx, fn, reps=7, warmup=2):
    for _ in range(warmup):
        fn()
    ctx.synchronize()
    ts = []
    for _ in range(reps):
        e0 = ctx.record()
        fn()
        e1 = ctx.record()
        e1.sync()
        ts.append(e1 - e0)
    return statistics.median(ts), min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--t-in", type=int, default=150)
    ap.add_argument("--batches", default="1,4,16,32")
    ap.add_argument("--out", default=None)
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--variants32", default="default")
    ap.add_argument("--modes", default="while1,while4,chunk")
    a = ap.parse_args()
    ctx = GpuContext()
    cfg = Tacotron2Config()
    w = random_weights(cfg, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    rows = []
    N, T_in = a.steps, a.t_in
    variants = {"default": {"pdl": True}, "nopdl": {"pdl": False}, "minb1": {"extra_defines": {"LSTM_MINB": 1}},
                "pdl_early": {"pdl": True, "extra_defines": {"PDL_TRIGGER": 1}},
                "pdl_prefetch": {"pdl": True, "extra_defines": {"LSTM_PREFETCH": 1}},
                # batch > 4: the LSTMs on CUDA cores (lstm_cell) instead of tensor cores, and the
                # tensor-core kernel's block shape (row tiles x K slices) and k-loop unrolling
                "scalar_lstm": {"tensor_core_lstm": False},
                **{f"tc_rowt{r}": {"extra_defines": {"LSTM_TC_ROWT": r}} for r in (1, 4, 8)},
                "tc_unroll4": {"extra_defines": {"LSTM_TC_UNROLL": 4}},
                "tc_rowt1_unroll4": {"extra_defines": {"LSTM_TC_ROWT": 1, "LSTM_TC_UNROLL": 4}}}
    modes = {"while1": ("while", 1), "while4": ("while", 4), "chunk": ("chunk", 1)}
    runs = [(pr, v) for pr in a.precisions.split(",") for v in (a.variants if pr == "fp16" else a.variants32).split(",")]
    scalar = None
    for precision, variant in runs:
        dec = GpuDecoder(ctx, cfg, w, precision=precision, **variants[variant])
        print(f"{precision} {variant}: decoder weights {dec.weight_bytes / 1e6:.1f} MB, L2 {ctx.l2_bytes / 1e6:.0f} MB, "
              f"pdl {dec.pdl}, tensor-core LSTMs {dec.tensor_core_lstm}", flush=True)
        if dec.tensor_core_lstm:  # a variant is only worth timing when it is right: vs lstm_cell, batch 32
            scalar = scalar or GpuDecoder(ctx, cfg, w, precision="fp16", tensor_core_lstm=False)
            mem = rng.standard_normal((32, 60, cfg.encoder_embedding_dim)).astype(np.float32)
            teacher = rng.standard_normal((32, cfg.n_mel_channels, 12)).astype(np.float32)
            kw = dict(teacher_frames=teacher, seed=5, gate_threshold=2.0)
            got, want = dec.decode(mem, np.full(32, 60), **kw), scalar.decode(mem, np.full(32, 60), **kw)
            err = float(np.linalg.norm(got.mel - want.mel) / np.linalg.norm(want.mel))
            print(f"  check vs lstm_cell, B=32 teacher-forced: mel relative error {err:.2e}", flush=True)
            assert err <= 1e-5, err
        for B in [int(x) for x in a.batches.split(",")]:
            mem = rng.standard_normal((B, T_in, cfg.encoder_embedding_dim)).astype(np.float32)
            lengths = np.full(B, T_in)
            lengths[1:] = rng.integers(T_in // 2, T_in + 1, B - 1)
            for mode, unroll in (modes[m] for m in a.modes.split(",")):
                p = dec.plan(B, T_in, N, 0, True, 2.0, mode, unroll, 25)

                def once():
                    dec.prepare(p, mem, lengths, max_steps=N, dropout=True, seed=5)
                    dec.run(p)

                once()
                ctx.synchronize()
                assert int(p.ints.to_host()[0]) == N, "did not run every step"
                # time the loop alone: prepare outside the events
                ts = []
                for _ in range(5):
                    dec.prepare(p, mem, lengths, max_steps=N, dropout=True, seed=5)
                    e0 = ctx.record()
                    dec.run(p)
                    e1 = ctx.record()
                    e1.sync()
                    ts.append((e1 - e0) * 1e3 / N)
                us = statistics.median(ts)
                rows.append(dict(precision=precision, variant=variant, B=B, what=f"loop {mode} x{unroll}",
                                 us_per_step=us, best=min(ts)))
                print(f"  B={B:2d} {mode:5s} unroll {unroll}: {us:7.2f} us/step (best {min(ts):.2f})", flush=True)
            # each kernel alone: a graph of 50 launches, state reset first (done = 0)
            p = dec.plan(B, T_in, 1000, 0, True, 2.0, "chunk", 1, 1)
            for name, fn in (("lstm_att", p.launch_lstm_att), ("energy", p.launch_energy),
                             ("context", p.launch_context), ("lstm_dec", p.launch_lstm_dec),
                             ("project", p.launch_project)):
                dec.prepare(p, mem, lengths, max_steps=1000, dropout=True, seed=5)
                ctx.synchronize()
                gb = ctx.graph_builder().begin_building()
                for _ in range(50):
                    fn(gb)
                gb.end_building()
                g = gb.complete()
                g.upload(ctx.stream)
                med, best = time_ms(ctx, lambda: g.launch(ctx.stream), reps=5, warmup=1)
                rows.append(dict(precision=precision, variant=variant, B=B, what=name, us_per_step=med * 1e3 / 50,
                                 best=best * 1e3 / 50))
                print(f"  B={B:2d} kernel {name:9s}: {med * 1e3 / 50:7.2f} us", flush=True)
    print(f"peak tracked device bytes {ctx.peak_bytes / 1e6:.1f} MB")
    print("\nsummary, us per step (median):")
    for r in rows:
        print(f"  {r['precision']} {r['variant']:10s} B={r['B']:2d} {r['what']:16s} {r['us_per_step']:7.2f}")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
