"""Time the GPU stages (WaveGlow FP16 / FP32 / FP32 with TF32 GEMMs, denoiser, encoder, postnet) at
the benchmark size: 580 mel frames (148,480 samples), batch 1. Device events, warm-up first, median
of many runs; the WaveGlow is also timed as a replayed CUDA graph (one launch instead of ~380).

    python tests/gpu/bench_stages.py [--reps 30] [--only "folded,2 groups x 16"]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import random_tacotron2_weights, random_waveglow_weights  # noqa: E402

from tts_desktop.engine.denoiser import DenoiserGpu  # noqa: E402
from tts_desktop.engine.runtime import GpuContext, _check  # noqa: E402
from tts_desktop.engine.stage_util import launch  # noqa: E402
from tts_desktop.engine.waveglow import PackedWaveGlow, WaveGlowGpu, gemm_gate_supported  # noqa: E402
from tts_desktop.model.config import Tacotron2Config, WaveGlowConfig  # noqa: E402


def median_ms(ctx, fn, reps: int, warmup: int = 3) -> tuple[float, float]:
    """Median and best of `reps` timings with driver events on the context's stream (the driver API
    directly: cuda.core's EventOptions differ between versions)."""
    from cuda.bindings import driver

    for _ in range(warmup):
        fn()
    ctx.synchronize()
    s = ctx.stream.handle
    e0 = _check(driver.cuEventCreate(0))
    e1 = _check(driver.cuEventCreate(0))
    ts = []
    for _ in range(reps):
        _check(driver.cuEventRecord(e0, s))
        fn()
        _check(driver.cuEventRecord(e1, s))
        _check(driver.cuEventSynchronize(e1))
        ts.append(float(_check(driver.cuEventElapsedTime(e0, e1))))
    return statistics.median(ts), min(ts)


class Graph:
    """Stream capture of fn() on the context's stream (kernels and cuBLAS alike), replayed."""

    def __init__(self, ctx, fn):
        from cuda.bindings import driver

        self.ctx, self.driver = ctx, driver
        s = ctx.stream.handle
        _check(driver.cuStreamBeginCapture(s, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED))
        fn()
        graph = _check(driver.cuStreamEndCapture(s))
        self.exec = _check(driver.cuGraphInstantiate(graph, 0))

    def __call__(self):
        _check(self.driver.cuGraphLaunch(self.exec, self.ctx.stream.handle))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--frames", type=int, default=580)
    ap.add_argument("--batch", type=int, default=8, help="also time this batch of --frames each (1: skip)")
    ap.add_argument("--only-fp16", action="store_true")
    ap.add_argument("--skip-others", action="store_true", help="WaveGlow only (no denoiser/encoder/postnet)")
    ap.add_argument("--only", default="", help="comma-separated parts of WaveGlow variant names: time only "
                    "those, and per op only what they run")
    args = ap.parse_args()
    ctx = GpuContext()
    print(f"device: {ctx.name} ({ctx.sm_count} SMs), cuBLAS {ctx.blas.version()}")
    rng = np.random.default_rng(0)
    F = args.frames
    mel = ctx.to_device(rng.standard_normal((1, 80, F)).astype(np.float32))
    cfg = WaveGlowConfig()
    w = random_waveglow_weights(cfg, rng)
    rows = []
    flops = 0.0
    T = F * 32
    c = cfg.wn_n_channels
    flops = 2.0 * T * cfg.n_flows * (cfg.wn_n_layers * (2 * c * (3 * c + 640)) + (cfg.wn_n_layers - 1) * c * c)
    variants = [  # (name, fp16, WaveGlowGpu kwargs)
        ("FP16 cuBLAS GEMM + fused, h fp16, 2 groups x 16 rows", True, dict(fused=True, gemm_gate=False)),
        ("FP16 wg_gemm_gate + fused (sm_90)", True, dict(fused=True, gemm_gate=True, fold_cond=False)),
        ("FP16 wg_gemm_gate, cond folded + fused (sm_90, default there)", True, dict(fused=True, gemm_gate=True,
                                                                                   fold_cond=True)),
        ("FP16 wg_gemm_gate in clusters of 2 + fused (sm_90)", True, dict(fused=True, gemm_gate=True,
                                                                          gemm_gate_cluster=2)),
        ("FP16 wg_layer: the whole layer in one kernel (sm_90, opt-in)", True, dict(fused=True, gemm_gate=True,
                                                                                    fold_cond=True, layer_kernel=True)),
        ("FP16 cuBLAS GEMM + fused, h fp16, 1 group x 32 rows", True, dict(fused=True, fused_groups=1,
                                                                         gemm_gate=False)),
        ("FP16 cuBLAS GEMM + fused, h fp32", True, dict(fused=True, h_half=False, gemm_gate=False)),
        ("FP16 unfused (gate/res GEMM/residual)", True, dict(fused=False)),
        ("FP32", False, {}),
        ("FP32 + TF32 GEMMs (tf32=True)", False, dict(tf32=True)),
    ]
    if args.only_fp16:
        variants = variants[:8]
    if args.only:
        variants = [v for v in variants if any(p in v[0] for p in args.only.split(","))]
    packed = {fp16: PackedWaveGlow.from_weights(cfg, w, fp16=fp16) for fp16 in {v[1] for v in variants}}
    by_name = {}
    for name, fp16, kw in variants:
        if kw.get("gemm_gate") and not gemm_gate_supported(cfg, ctx.cc, ctx.max_shared_per_block):
            continue
        wg = WaveGlowGpu(ctx, packed[fp16], **kw)
        by_name[name] = wg
        out = ctx.empty((1, F * 256), np.float32)
        run = lambda: wg.infer(mel, [F], sigma=0.6, seed=1, out=out)  # noqa: E731
        med, best = median_ms(ctx, run, args.reps)
        g = Graph(ctx, run)
        gmed, gbest = median_ms(ctx, g, args.reps)
        a1 = out.to_host()
        g()
        a2 = out.to_host()
        assert np.array_equal(a1, a2), "graph replay must give the stream result"
        rows.append((f"WaveGlow {name} stream", med, best, flops / med / 1e9))
        rows.append((f"WaveGlow {name} graph", gmed, gbest, flops / gmed / 1e9))
        if args.batch > 1:
            nb = args.batch
            melb = ctx.to_device(rng.standard_normal((nb, 80, F)).astype(np.float32))
            outb = ctx.empty((nb, F * 256), np.float32)
            runb = lambda: wg.infer(melb, [F] * nb, sigma=0.6, seed=1, out=outb)  # noqa: E731
            reps_b = max(3, args.reps // (4 if fp16 else 10))
            med, best = median_ms(ctx, runb, reps_b, warmup=1)
            rows.append((f"WaveGlow {name} batch {nb} stream", med, best, nb * flops / med / 1e9))
            del melb, outb
            wg._buf = None
            ctx.synchronize()
            wg.infer(mel, [F], sigma=0.6, seed=1, out=out)  # back to the batch-1 scratch
        del g
    # per-op breakdown at batch 1 (each op alone, 20 back-to-back launches per timing)
    wg_gg = by_name.get("FP16 wg_gemm_gate + fused (sm_90)")
    wg_fold = by_name.get("FP16 wg_gemm_gate, cond folded + fused (sm_90, default there)")
    ops = {}
    if wg_fold is not None:
        lfo = wg_fold.flows[0]["layers"][0]
        ops["wg_gemm_gate folded [taps|mel] 512x(768+320) + gate"] = lambda: wg_fold._layer_gemm_gate(
            wg_fold._buf, T, 3 * c, lfo)
        ops["  + fused res+residual, acts in (the default's second kernel)"] = lambda: wg_fold.fused_layer(
            T, 1, lfo, 4, wg_fold._buf.acc[0], 2, True)
    wg_layer = by_name.get("FP16 wg_layer: the whole layer in one kernel (sm_90, opt-in)")
    if wg_layer is not None:
        llo = wg_layer.flows[0]["layers"][0]
        # layer 0 (reads XS, writes XS2): the same work as the two lines above together
        ops["wg_layer, one whole layer"] = lambda: wg_layer._layer_whole(wg_layer._buf, T, 1, 3 * c, llo, 4,
                                                                         wg_layer._buf.acc[0], 0)
    if args.only:  # no per-op table beyond the variants timed
        for k, fn in ops.items():
            m, b_ = median_ms(ctx, lambda: [fn() for _ in range(20)], 10)
            rows.append((f"  {k} (x1)", m / 20, b_ / 20, float("nan")))
        _print(rows)
        return 0
    wf = by_name["FP16 cuBLAS GEMM + fused, h fp16, 2 groups x 16 rows"]
    wu = by_name["FP16 unfused (gate/res GEMM/residual)"]
    kc = 3 * c + 640
    lf, lu = wf.flows[0]["layers"][0], wu.flows[0]["layers"][0]
    bf, bu = wf._buf, wu._buf
    wh = by_name["FP16 cuBLAS GEMM + fused, h fp32"]
    w1 = by_name["FP16 cuBLAS GEMM + fused, h fp16, 1 group x 32 rows"]
    if wg_gg is not None:
        lg = wg_gg.flows[0]["layers"][0]
        ops["wg_gemm_gate [taps|cond] 512x1408 + gate"] = lambda: wg_gg._layer_gemm_gate(wg_gg._buf, T, kc, lg)
        wg_c2 = by_name["FP16 wg_gemm_gate in clusters of 2 + fused (sm_90)"]
        lc2 = wg_c2.flows[0]["layers"][0]
        ops["wg_gemm_gate, clusters of 2"] = lambda: wg_c2._layer_gemm_gate(wg_c2._buf, T, kc, lc2)
        ops["fused res+residual, acts in, 2 groups"] = lambda: wg_gg.fused_layer(T, 1, lg, 4, wg_gg._buf.acc[0], 2,
                                                                                 True)
    ops |= {
        "GEMM [taps|cond] 512x1408": lambda: wu._gemm(2 * c, T, kc, lu["wcat"].ptr, kc, bu.xs.ptr, bu.ld,
                                                      bu.y.ptr, 2 * c),
        "fused gate+res+residual, h fp16, 2 groups": lambda: wf.fused_layer(T, 1, lf, 4, bf.acc[0], 2, True),
        "fused, h fp16, 2 groups, last layer (gate+skip only)": lambda: wf.fused_layer(T, 1, lf, 4, bf.acc[0], 2,
                                                                                       False),
        "fused gate+res+residual, h fp32, 2 groups": lambda: wh.fused_layer(T, 1, wh.flows[0]["layers"][0], 4,
                                                                            wh._buf.acc[0], 2, True),
        "fused gate+res+residual, h fp16, 1 group": lambda: w1.fused_layer(T, 1, w1.flows[0]["layers"][0], 4,
                                                                           w1._buf.acc[0], 2, True),
        "fused, h fp16, 1 group, last layer": lambda: w1.fused_layer(T, 1, w1.flows[0]["layers"][0], 4,
                                                                     w1._buf.acc[0], 2, False),
        "unfused: GEMM res 256x256": lambda: wu._gemm(c, T, c, lu["w_res"].ptr, c, bu.a.ptr, c, bu.r.ptr, c),
        "unfused: gate kernel": lambda: launch(ctx, wu.k_gate, min((T + 7) // 8, 8 * ctx.sm_count), 256, T, bu.y,
                                               lu["gate_b"], bu.a, lu["w_es"], 4, bu.acc[0]),
        "unfused: residual kernel": lambda: launch(ctx, wu.k_res, (T * c // 8 + 255) // 256, 256, T, wu._row_off, 1,
                                                   bu.r, lu["b_res"], bu.h, bu.xs, bu.ld, 3, 2),
    }
    for k, fn in ops.items():
        m, b_ = median_ms(ctx, lambda: [fn() for _ in range(20)], 10)
        rows.append((f"  {k} (x1)", m / 20, b_ / 20, float("nan")))
    wg16 = wf

    if args.skip_others:
        _print(rows)
        return 0
    dn = DenoiserGpu.from_waveglow(ctx, wg16)
    audio = wg16.infer(mel, [F], sigma=0.6, seed=1)
    dout = ctx.empty(audio.shape, np.float32)
    med, best = median_ms(ctx, lambda: dn.denoise(audio, [F * 256], 0.01, out=dout), args.reps)
    rows.append(("denoiser FP32", med, best, float("nan")))

    try:
        from tts_desktop.engine.encoder import EncoderGpu, PackedEncoder
        from tts_desktop.engine.postnet import PackedPostnet, PostnetGpu

        tcfg = Tacotron2Config()
        tw = random_tacotron2_weights(tcfg, rng)
        for fp16 in (True, False):
            enc = EncoderGpu(ctx, PackedEncoder.from_weights(tcfg, tw, fp16=fp16))
            ids = ctx.to_device(rng.integers(1, tcfg.n_symbols, size=(1, 128)).astype(np.int32))
            med, best = median_ms(ctx, lambda: enc.encode(ids, [128]), args.reps)
            rows.append((f"encoder {'FP16' if fp16 else 'FP32'} (128 symbols)", med, best, float("nan")))
            post = PostnetGpu(ctx, PackedPostnet.from_weights(tcfg, tw, fp16=fp16))
            med, best = median_ms(ctx, lambda: post.run(mel, [F]), args.reps)
            rows.append((f"postnet {'FP16' if fp16 else 'FP32'} (580 frames)", med, best, float("nan")))
    except ImportError as e:
        print(f"encoder/postnet not timed: {e}")

    _print(rows)
    return 0


def _print(rows) -> None:
    print(f"\n{'stage':58s} {'median ms':>10s} {'best ms':>9s} {'TFLOP/s':>8s}")
    for name, m, b, tf in rows:
        print(f"{name:58s} {m:10.3f} {b:9.3f} {tf:8.1f}")


if __name__ == "__main__":
    sys.exit(main())
