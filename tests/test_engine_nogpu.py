"""Engine checks that need no GPU (CI): every kernel compiles through NVRTC for sm_80 and sm_90,
gpu_status answers without raising, doctor reports on any machine."""

from __future__ import annotations

import numpy as np
import pytest

from tts_desktop.engine import compile as cc
from tts_desktop.engine.doctor import doctor_report, format_report
from tts_desktop.engine.runtime import gpu_status

nvrtc = pytest.importorskip("cuda.core", reason="cuda-core (the 'gpu' extra) is not installed")
if cc.nvrtc_version() is None:
    pytest.skip("NVRTC cannot be loaded (nvidia-cuda-nvrtc missing)", allow_module_level=True)

KERNELS = [p.name for p in cc.kernel_files()]


def test_kernels_exist():
    assert "decoder.cu" in KERNELS


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_compiles(name, arch):
    obj = cc.compile_cuda([name], arch)
    assert len(obj.code) > 1000


@pytest.mark.parametrize("half", [0, 1])
def test_decoder_compiles_at_reduced_sizes(half):
    # the sizes tests/gpu/test_decoder_gpu.py uses
    d = dict(DEC_HALF=half, N_MEL=80, PRENET=32, ENC=128, ATT_RNN=64, DEC_RNN=96, ATT_DIM=32, LOC_F=8, LOC_K=7)
    assert len(cc.compile_cuda(["decoder.cu"], "sm_90", d).code) > 1000


def test_bad_source_raises_compile_error():
    with pytest.raises(cc.CompileError, match="NVRTC"):
        cc.compile_cuda(['extern "C" __global__ void k() { undefined_thing(); }\n'], "sm_90")


def test_kernel_source_hash_is_stable_and_hex():
    h = cc.kernel_source_hash()
    assert h == cc.kernel_source_hash() and len(h) == 64 and int(h, 16) >= 0


def test_gpu_status_never_raises():
    ok, why = gpu_status()
    assert isinstance(ok, bool) and isinstance(why, str) and why


def test_doctor_report_compiles_every_kernel():
    rep = doctor_report("sm_80")
    assert rep["arch"] == "sm_80"
    assert {k["kernel"] for k in rep["kernels"]} == {p.name for p in cc.kernel_files()}
    bad = [k for k in rep["kernels"] if not k["ok"]]
    assert not bad, bad
    assert rep["ok"]
    text = format_report(rep)
    assert "decoder.cu" in text and "result" in text
    ok, _ = gpu_status()
    assert rep["gpu"]["ok"] == ok
    # which WaveGlow layer the FP16 engine will run there (an A100 blocks have 163 KiB)
    wf = rep["waveglow_fused"]
    assert wf["limit"] == 163 * 1024 and "needs" in wf["256"] and wf["128"]["groups"] == 2
    assert "256 channels (NVIDIA) unfused" in text and "128 channels (demo voice) fused" in text
    # the layer GEMM: cuBLAS's there; on sm_90 (Hopper's 227 KiB) ours with the cond folded
    assert wf["256"]["gemm"] == wf["128"]["gemm"] == "cuBLAS"
    from tts_desktop.engine.doctor import _waveglow_paths

    hopper = _waveglow_paths("sm_90", {"ok": False})
    assert hopper["256"]["gemm"] == hopper["128"]["gemm"] == "wg_gemm_gate, cond folded"


def test_unsupported_dimensions_give_a_one_line_reason():
    """A voice whose sizes the decoder kernels cannot take fails to compile with a static_assert;
    the message users see (CLI, `--device auto` fallback note) is that assertion, not NVRTC's log."""
    from tts_desktop.engine.compile import CompileError, compile_cuda, headline

    with pytest.raises(CompileError) as info:
        compile_cuda(["decoder.cu"], "sm_90", defines={"ATT_DIM": 48})
    assert headline(info.value) == 'static assertion failed with "ATT_DIM must be 32, 64, 128 or 256"'


def test_decoder_compiles_for_the_golden_sizes():
    """NVIDIA's small golden model (encoder 64, attention 32, LSTMs 96, prenet 32): dec_att_context
    takes 64-dim blocks there (context_dims), so the golden voice runs on the GPU engine too."""
    from tts_desktop.engine.compile import compile_cuda
    from tts_desktop.engine.decoder import context_dims, decoder_defines
    from tts_desktop.model.config import Tacotron2Config

    golden = Tacotron2Config(symbols_embedding_dim=64, encoder_embedding_dim=64, attention_rnn_dim=96,
                             attention_dim=32, attention_location_n_filters=8, decoder_rnn_dim=96,
                             prenet_dim=32, postnet_embedding_dim=64)
    assert [context_dims(e) for e in (512, 64, 96, 40)] == [128, 64, 32, 8]
    with pytest.raises(ValueError, match="multiple of 8"):
        context_dims(60)
    for half in (False, True):
        compile_cuda(["decoder.cu"], "sm_90", decoder_defines(golden, half))


def test_blas_tf32_is_a_per_call_compute_type():
    """Strict FP32 GEMMs stay cublasSgemm; tf32=True makes them cublasGemmEx / GemmStridedBatchedEx
    with COMPUTE_32F_FAST_TF32 (nvmath's enum, checked to exist); FP16 GEMMs keep COMPUTE_32F and
    refuse tf32. Recorded against a stand-in for nvmath's cuBLAS module, so no GPU is needed."""
    import numpy as np
    from nvmath.bindings import cublas

    from tts_desktop.engine import runtime as rt

    assert int(cublas.ComputeType.COMPUTE_32F_FAST_TF32) == 77 and int(cublas.ComputeType.COMPUTE_32F) == 68

    class Recorder:
        ComputeType, Operation = cublas.ComputeType, cublas.Operation

        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *a: self.calls.append((name, a))

    blas = rt.Blas.__new__(rt.Blas)
    blas._cb, blas.handle, blas._scalars = Recorder(), 1, []
    f32, f16 = rt.CUDA_R_32F, rt.CUDA_R_16F
    args = (True, False, 64, 32, 16, 0x1000, f32, 16, 0x2000, f32, 16, 0x3000, f32, 64)
    blas.gemm_raw(*args)
    blas.gemm_raw(*args, tf32=True)
    blas.gemm_raw(*args[:6], f16, 16, 0x2000, f16, 16, 0x3000, f32, 64)
    (n0, _), (n1, a1), (n2, a2) = blas._cb.calls
    assert n0 == "sgemm" and n1 == n2 == "gemm_ex"
    assert a1[-2] == cublas.ComputeType.COMPUTE_32F_FAST_TF32 and a2[-2] == cublas.ComputeType.COMPUTE_32F
    with pytest.raises(ValueError, match="float32"):
        blas.gemm_raw(*args[:6], f16, 16, 0x2000, f16, 16, 0x3000, f32, 64, tf32=True)

    class Arr:  # DeviceArray's shape/dtype/ptr/ndim, nothing on a device
        def __init__(self, shape, dtype=np.float32):
            self.shape, self.dtype, self.ptr, self.ndim = shape, np.dtype(dtype), 0x4000, len(shape)

    blas._cb.calls.clear()
    a, b, c = Arr((3, 8, 4)), Arr((3, 4, 5)), Arr((3, 8, 5))
    blas.gemm_strided_batched(a, b, c)
    blas.gemm_strided_batched(a, b, c, tf32=True)
    blas.gemm(Arr((8, 4)), Arr((4, 5)), Arr((8, 5)), tf32=True)
    (s0, b0), (s1, b1), (s2, b2) = blas._cb.calls
    assert s0 == s1 == "gemm_strided_batched_ex" and s2 == "gemm_ex"
    assert b0[-2] == cublas.ComputeType.COMPUTE_32F
    assert b1[-2] == b2[-2] == cublas.ComputeType.COMPUTE_32F_FAST_TF32


@pytest.mark.bundled_voice
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_demo_voice_engine_compiles(arch):
    """The bundled demo voice's FP16 engine, kernels as the engine build requests them: among
    them WaveGlow's fused WN layer at 128 channels (NVIDIA's voice has 256)."""
    from pathlib import Path

    from tts_desktop.engine import build as B
    from tts_desktop.model.voice_files import load_voice

    config, t2, wg = load_voice(Path(__file__).resolve().parents[1] / "resources" / "voices" / "demo")
    parts = B.pack(config, t2, wg, "fp16")
    assert parts["waveglow"].flows[0]["layers"][0].get("w_frag") is not None  # the fused path
    requests = B.compile_requests(config, parts, "fp16", arch)
    assert {"WG_C": 128}.items() <= next(r["defines"] for r in requests if r["sources"] == ["waveglow.cu"]).items()
    assert all(len(m["cubin"]) > 1000 for m in B.compile_modules(requests, arch))


def test_gemm_gate_weights_interleave_gate_pairs():
    """wg_gemm_gate's weights: row 2j is the tanh row of channel j, 2j + 1 its sigmoid row."""
    from tts_desktop.engine.waveglow import interleave_gate_rows

    w = np.arange(8 * 3).reshape(8, 3)
    got = interleave_gate_rows(w)
    assert got[0::2].tolist() == w[:4].tolist() and got[1::2].tolist() == w[4:].tolist()


@pytest.mark.parametrize("arch,channels,want", [
    ("sm_90", 256, (True, 2, 16)), ("sm_90", 128, (True, 2, 16)),
    ("sm_80", 256, (False, None, None)), ("sm_80", 128, (True, 2, 16)),
    ("sm_86", 256, (False, None, None)), ("sm_89", 128, (True, 2, 16)),
    ("sm_75", 128, (False, None, None)), ("sm_99", 128, (False, None, None)),  # 64 KiB; unknown: 48 KiB
])
def test_fused_waveglow_layer_only_where_its_shared_memory_fits(arch, channels, want, monkeypatch):
    """wg_layer_fused keeps W_res in shared memory: 194 KiB at NVIDIA's 256 channels, 70 KiB at the
    demo voice's 128. Where a block may not have that much (A100: 163 KB, GeForce: 99 KB), the
    engine plans the unfused path instead of a kernel that would fail to launch; the kernels it
    compiles follow the plan."""
    from tts_desktop.engine import build as B
    from tts_desktop.engine.waveglow import PackedWaveGlow, WaveGlowGpu, fused_smem_bytes
    from tts_desktop.model.config import WaveGlowConfig
    from tts_desktop.model.random_voice import random_voice

    cfg = WaveGlowConfig(n_flows=2, wn_n_layers=2, wn_n_channels=channels)
    _, _, w = random_voice(waveglow=cfg, seed=0)
    ctx = B._PlanContext(arch)
    monkeypatch.setenv("TTS_DESKTOP_WG_LAYER", "1")   # ignored where wg_layer cannot run
    assert not WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), fused=False).layer_kernel
    monkeypatch.delenv("TTS_DESKTOP_WG_LAYER")
    ctx = B._PlanContext(arch)
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True))
    fused, groups, rows = want
    assert wg.fused is fused
    defines = next(r["defines"] for r in ctx.requests if r["sources"] == ["waveglow.cu"])
    # wg_gemm_gate with the cond folded is the default where the fused layer runs on sm_90 (planned
    # for sm_90a), refused elsewhere
    gg = fused and arch == "sm_90"
    assert wg.gemm_gate is gg and wg.fold is gg
    assert ("WG_ACTS_IN" in defines) is gg
    gg_requests = [r for r in ctx.requests if r["sources"] == ["wg_gemm_gate.cu"]]
    assert gg_requests == ([{"sources": ["wg_gemm_gate.cu"], "defines": {"GG_CLUSTER": 1, "GG_FOLD": 1},
                             "name_expressions": [], "arch": "sm_90a"}] if gg else [])
    if gg:
        defines = {k: v for k, v in defines.items() if k != "WG_ACTS_IN"}
        WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), gemm_gate=False)  # cuBLAS's GEMM
        assert ctx.requests[-1]["defines"] == defines
        WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), gemm_gate=True, fold_cond=False)
        assert ctx.requests[-1] == {"sources": ["wg_gemm_gate.cu"], "defines": {"GG_CLUSTER": 1},
                                    "name_expressions": [], "arch": "sm_90a"}
        # its fused layer takes acts (the same build as the default's)
        assert {**defines, "WG_ACTS_IN": 1} in [r["defines"] for r in ctx.requests if r["sources"] == ["waveglow.cu"]]
        # the cond folded into the GEMM: its own build of wg_gemm_gate; on a recording context the
        # folded weights are only declared (one (P 2C) x 4 n_mel matrix and P x 2C biases per layer)
        wf = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), gemm_gate=True, fold_cond=True)
        assert wf.flows[0]["layers"][0]["w_fold"].shape == (32 * 2 * channels, 320)
        assert wf.flows[0]["layers"][0]["b_fold"].shape == (32, 2 * channels)
        assert not WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), gemm_gate_cluster=2).fold
        for bad in (dict(gemm_gate=False, fold_cond=True), dict(gemm_gate=True, gemm_gate_cluster=2, fold_cond=True)):
            with pytest.raises(ValueError, match="fold_cond"):
                WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), **bad)
        # the whole layer in one kernel (opt-in): its own sm_90a build per width; the default asks for none
        assert not any(r["sources"] == ["wg_layer.cu"] for r in ctx.requests)
        wl = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), layer_kernel=True)
        assert wl.layer_kernel and ctx.requests[-1] == {"sources": ["wg_layer.cu"], "defines": {"GL_C": channels},
                                                        "name_expressions": [], "arch": "sm_90a"}
        assert wl.flows[0]["layers"][0]["w_skip16"].shape == (16, channels)
        with pytest.raises(ValueError, match="layer_kernel"):
            WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), fold_cond=False, layer_kernel=True)
        # ... or through the environment, for `bench` (where it can run; elsewhere the switch is ignored)
        monkeypatch.setenv("TTS_DESKTOP_WG_LAYER", "1")
        assert WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True)).layer_kernel
        assert not WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), fold_cond=False).layer_kernel
        monkeypatch.delenv("TTS_DESKTOP_WG_LAYER")
    else:
        with pytest.raises(ValueError, match="sm_90"):
            WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), gemm_gate=True)
    if fused:
        assert (wg.fused_groups, wg.fused_rows) == (groups, rows)
        assert wg.fused_smem == fused_smem_bytes(channels, rows, groups) <= ctx.max_shared_per_block
        assert defines["WG_GROUPS"] == groups and defines["WG_BM"] == rows
    else:
        assert "WG_BM" not in defines and "WG_GROUPS" not in defines
        with pytest.raises(ValueError, match="shared memory"):
            WaveGlowGpu(ctx, PackedWaveGlow.from_weights(cfg, w, fp16=True), fused=True)


def test_fused_waveglow_layer_shapes_and_sizes():
    from tts_desktop.engine.waveglow import fused_shape_ok, fused_smem_bytes

    assert fused_smem_bytes(256, 16, 2) == 198_656 and fused_smem_bytes(256, 32, 1) == 206_848
    assert fused_smem_bytes(128, 16, 2) == fused_smem_bytes(128, 32, 1) == 71_680
    assert fused_shape_ok(256, 16, 2) and fused_shape_ok(256, 32, 1) and fused_shape_ok(128, 16, 2)
    assert not fused_shape_ok(256, 24, 1) and not fused_shape_ok(128, 16, 1)  # 16 x 16 items over 512 threads


def test_layer_kernel_skip_weights_and_shared_memory():
    """wg_layer's skip weights: W_end W_skip as fp16 hi rows 0.. and fp16 lo rows 8.. (what rounding
    lost), so hi + lo carries the float weights to ~2^-22 relative, zero rows past 2 n_half; its
    shared memory fits Hopper's 227 KiB per block at NVIDIA's 256 channels."""
    from tts_desktop.engine.waveglow import layer_kernel_smem_bytes, skip_hi_lo

    w = np.random.default_rng(3).standard_normal((6, 256)) / 16
    s = skip_hi_lo(w)
    assert s.shape == (16, 256) and s.dtype == np.float16
    assert not s[6:8].any() and not s[14:].any()
    np.testing.assert_array_equal(s[:6], w.astype(np.float16))
    both = s[:6].astype(np.float64) + s[8:14].astype(np.float64)
    assert np.abs(both - w).max() < np.abs(w).max() * 2.0**-20
    assert np.abs(s[:6].astype(np.float64) - w).max() > np.abs(w).max() * 2.0**-14  # lo is needed
    with pytest.raises(ValueError, match="8 outputs"):
        skip_hi_lo(np.ones((9, 128)))
    assert layer_kernel_smem_bytes(256) <= 227 * 1024 < layer_kernel_smem_bytes(256, stages=4)
