"""The engine build and its on-disk cache (tts_desktop/engine/build.py), without a GPU (CI).

Packs a reduced-size random voice, NVRTC-compiles every kernel module the stages ask for into
sm_90 cubins, saves, loads back, and checks that anything but the exact, intact engine for the key
is rebuilt: a manifest for another key, a truncated or altered payload, a malformed manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.core", reason="cuda-core (the 'gpu' extra) is not installed")
from tts_desktop.engine import build as B  # noqa: E402
from tts_desktop.engine import compile as cc  # noqa: E402

if cc.nvrtc_version() is None:
    pytest.skip("NVRTC cannot be loaded (nvidia-cuda-nvrtc missing)", allow_module_level=True)

from tts_desktop.model.config import Tacotron2Config, WaveGlowConfig  # noqa: E402
from tts_desktop.model.random_voice import random_voice  # noqa: E402

# decoder.cu's constraints (multiples of 8, ATT_DIM 32..256), small WaveGlow
T2 = Tacotron2Config(symbols_embedding_dim=32, encoder_embedding_dim=128, attention_rnn_dim=64, attention_dim=32,
                     attention_location_n_filters=8, attention_location_kernel_size=7, decoder_rnn_dim=96,
                     prenet_dim=32, postnet_embedding_dim=32, max_decoder_steps=40)
WG = WaveGlowConfig(n_flows=4, wn_n_layers=2, wn_n_channels=32)
KEY_ARGS = dict(gpu_name="NVIDIA H100 80GB HBM3", arch="sm_90", precision="fp16", max_batch=8)


@pytest.fixture(scope="module")
def voice():
    return random_voice(T2, WG, seed=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def engine(voice, cache):
    config, tw, ww = voice
    return B.get_engine(None, config, tw, ww, cache_dir=cache, **KEY_ARGS)


def _tensors(parts) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    B.flatten(parts, out)
    return out


def _copy_engine(engine, tmp_path) -> Path:
    dst = tmp_path / engine.path.name
    shutil.copytree(engine.path, dst)
    return dst


def _payload(folder: Path) -> Path:
    return folder / json.loads((folder / B.MANIFEST).read_text())["payload"]["file"]


# ------------------------------------------------------------------------------------- build


def test_build_compiles_every_stage_module_for_sm90(engine):
    assert not engine.cached and engine.path is not None and engine.problems == []
    sources = sorted(s for m in engine.modules for s in m["sources"])
    assert sources == ["decoder.cu", "denoiser.cu", "encoder_conv.cu", "encoder_lstm.cu", "waveglow.cu"]
    for m in engine.modules:
        assert m["cubin"][:4] == b"\x7fELF" and len(m["cubin"]) > 1000, m["sources"]
    dec = next(m for m in engine.modules if m["sources"] == ["decoder.cu"])
    assert dec["defines"]["ENC"] == 128 and dec["defines"]["DEC_RNN"] == 96 and dec["defines"]["DEC_HALF"] == 1
    wg = next(m for m in engine.modules if m["sources"] == ["waveglow.cu"])
    assert wg["defines"]["WG_C"] == 32 and wg["defines"]["ACT_HALF"] == 1


def test_fp16_engine_stores_half_where_the_engine_computes_in_half(engine, voice):
    parts = engine.parts
    assert parts["waveglow"].flows[0]["layers"][0]["wcat"].dtype == np.float16
    assert parts["waveglow"].flows[0]["w_inv"].dtype == np.float32  # the coupling stays float
    assert parts["encoder"].convs[0].w.dtype == np.float16 and parts["encoder"].w_hh.dtype == np.float32
    d = parts["decoder"]
    assert d["decoder.attention_rnn.weight_ih"].dtype == np.float16
    assert d["decoder.attention_rnn.bias_ih"].dtype == np.float32
    assert d["decoder.attention_layer.location_layer.location_conv.conv.weight"].dtype == np.float32
    # and stored that way they pack to exactly the bits the FP16 decoder uploads
    B._check_decoder_storage(T2, voice[1], d, fp16=True)


def test_fp32_engine_stores_float32(voice, tmp_path):
    config, tw, ww = voice
    e = B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **{**KEY_ARGS, "precision": "fp32"})
    dtypes = {a.dtype for n, a in _tensors(e.parts).items() if a.dtype.kind == "f"}
    assert dtypes == {np.dtype(np.float32)}
    assert next(m for m in e.modules if m["sources"] == ["decoder.cu"])["defines"]["DEC_HALF"] == 0


def test_decoder_storage_check_catches_a_lossy_store(voice):
    stored = B.decoder_storage(voice[1], fp16=True)
    stored["decoder.attention_rnn.bias_ih"] = stored["decoder.attention_rnn.bias_ih"].astype(np.float16)
    with pytest.raises(B.EngineError, match="att_b"):
        B._check_decoder_storage(T2, voice[1], stored, fp16=True)


def test_closed_form_stft_bases_equal_the_pseudo_inverse():
    from tts_desktop.engine.denoiser import stft_bases

    for n, win in ((256, 256), (256, 200)):
        for ours, ref in zip(B.stft_bases(n, win), stft_bases(n, win)):
            assert ours.dtype == ref.dtype == np.float32
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


# ------------------------------------------------------------------------------------- key


def test_key_changes_with_each_component(voice, monkeypatch):
    config, tw, ww = voice
    base = B.make_key(None, config, tw, ww, **KEY_ARGS)
    digests = {base.digest()}

    def add(key):
        assert key.digest() not in digests, key
        digests.add(key.digest())

    for field, value in (("gpu_name", "NVIDIA H200"), ("arch", "sm_80"), ("precision", "fp32"), ("max_batch", 32)):
        add(B.make_key(None, config, tw, ww, **{**KEY_ARGS, field: value}))
    tw2 = dict(tw)
    tw2["embedding.weight"] = tw["embedding.weight"].copy()
    tw2["embedding.weight"][3, 1] += 1e-3
    add(B.make_key(None, config, tw2, ww, **KEY_ARGS))
    ww2 = dict(ww)
    ww2["upsample.bias"] = ww["upsample.bias"].astype(np.float16)  # same values' dtype matters too
    add(B.make_key(None, config, tw, ww2, **KEY_ARGS))
    monkeypatch.setattr(B, "kernel_source_hash", lambda: "0" * 64)
    add(B.make_key(None, config, tw, ww, **KEY_ARGS))
    monkeypatch.undo()
    monkeypatch.setattr(B, "engine_code_hash", lambda: "1" * 64)
    add(B.make_key(None, config, tw, ww, **KEY_ARGS))
    monkeypatch.undo()
    monkeypatch.setattr(B, "__version__", "99.0")
    add(B.make_key(None, config, tw, ww, **KEY_ARGS))
    monkeypatch.undo()
    assert B.make_key(None, config, tw, ww, **KEY_ARGS) == base  # and nothing else moves it


def test_tf32_is_part_of_the_key(voice):
    """The FP32 engine with TF32 GEMMs is another engine: another digest and folder than the strict
    FP32 one (and the strict key is what it always was: tf32 off by default)."""
    config, tw, ww = voice
    fp32 = {**KEY_ARGS, "precision": "fp32"}
    strict = B.make_key(None, config, tw, ww, **fp32)
    assert strict == B.make_key(None, config, tw, ww, **fp32, tf32=False) and strict.tf32 is False
    tf32 = B.make_key(None, config, tw, ww, **fp32, tf32=True)
    assert tf32.tf32 is True and tf32.to_dict()["tf32"] is True
    assert tf32.digest() != strict.digest() and tf32 != strict
    assert {k for k, v in tf32.to_dict().items() if strict.to_dict()[k] != v} == {"tf32"}
    assert "-fp32-tf32-sm_90-" in B._folder_name(config, tf32)
    assert "-fp32-sm_90-" in B._folder_name(config, strict)
    assert B._folder_name(config, tf32) != B._folder_name(config, strict)


def test_tf32_key_rejects_fp16_and_pre_ampere(voice):
    config, tw, ww = voice
    with pytest.raises(ValueError, match="FP32 engine only"):
        B.make_key(None, config, tw, ww, **KEY_ARGS, tf32=True)  # KEY_ARGS is fp16
    for arch in ("sm_70", "sm_75"):
        with pytest.raises(ValueError, match="sm_80"):
            B.make_key(None, config, tw, ww, **{**KEY_ARGS, "precision": "fp32", "arch": arch}, tf32=True)
    for arch in ("sm_80", "sm_86", "sm_90", "sm_90a", "sm_100", "sm_120"):
        assert B.make_key(None, config, tw, ww, **{**KEY_ARGS, "precision": "fp32", "arch": arch}, tf32=True).tf32


def test_tf32_engine_is_never_loaded_as_strict(voice, tmp_path):
    """Strict and TF32 FP32 engines of one voice sit side by side in one cache; either one's files
    put in the other's folder are rejected (the key differs in tf32) and rebuilt, never used. The
    two hold the same arrays and cubins: TF32 is a choice of cuBLAS compute type at run time."""
    config, tw, ww = voice
    fp32 = {**KEY_ARGS, "precision": "fp32"}
    strict = B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **fp32)
    fast = B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **fp32, tf32=True)
    assert not fast.cached and fast.path != strict.path and fast.key.tf32 and not strict.key.tf32
    assert B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **fp32, tf32=True).path == fast.path
    again = B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **fp32)
    assert again.cached and again.path == strict.path and not again.key.tf32
    a, b = _tensors(strict.parts), _tensors(fast.parts)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert [m["cubin"] for m in strict.modules] == [m["cubin"] for m in fast.modules]
    for src, dst in ((strict, fast), (fast, strict)):
        shutil.rmtree(dst.path)
        shutil.copytree(src.path, dst.path)
        with pytest.raises(B.EngineError, match=r"another key \(differs in tf32\)"):
            B.load_engine(dst.path, dst.key)
        e = B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **fp32, tf32=dst.key.tf32)
        assert not e.cached and e.key.tf32 == dst.key.tf32 and any("tf32" in p for p in e.problems)


def test_tf32_reaches_waveglow_only(engine, voice, tmp_path):
    """construct_stages hands tf32 to WaveGlow (the only stage whose GEMMs it changes) and asks for
    the same kernel modules; the FP16 WaveGlow refuses it."""
    from tts_desktop.engine.waveglow import WaveGlowGpu

    config, tw, ww = voice
    e = B.get_engine(None, config, tw, ww, cache_dir=tmp_path, **{**KEY_ARGS, "precision": "fp32"})
    for tf32 in (False, True):
        stages = B.construct_stages(B._PlanContext("sm_90"), config, e.parts, "fp32", tf32)
        assert stages["waveglow"].tf32 is tf32
        assert not any(getattr(s, "tf32", False) for n, s in stages.items() if n != "waveglow")
    assert (B.compile_requests(config, e.parts, "fp32", "sm_90", True)
            == B.compile_requests(config, e.parts, "fp32", "sm_90", False))
    with pytest.raises(ValueError, match="FP32 engine only"):
        WaveGlowGpu(B._PlanContext("sm_90"), engine.parts["waveglow"], tf32=True)  # the fp16 engine's


class _RecordingBlas:
    """nvmath's cuBLAS module as the engine calls it, recording instead of computing."""

    def __init__(self):
        from nvmath.bindings import cublas

        self.ComputeType, self.Operation, self.calls = cublas.ComputeType, cublas.Operation, []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))


class _GemmContext(B._PlanContext):
    """_PlanContext that also lets a stage run: launches do nothing, cuBLAS calls are recorded."""

    sm_count = 132

    class Array(B._PlanArray):
        ndim = property(lambda self: len(self.shape))

        def zero(self):
            pass

        poison = zero

    def __init__(self):
        from tts_desktop.engine.runtime import Blas

        super().__init__("sm_90")
        self.blas = Blas.__new__(Blas)
        self.blas._cb, self.blas.handle, self.blas._scalars = _RecordingBlas(), 1, []

    def to_device(self, host, dtype=None):
        a = np.asarray(host)
        return self.Array(a.shape, dtype or a.dtype)

    def empty(self, shape, dtype=np.float32):
        return self.Array((shape,) if np.isscalar(shape) else shape, dtype)

    zeros = empty

    def launch(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("precision,tf32", [("fp32", False), ("fp32", True), ("fp16", False)])
def test_waveglow_gemms_use_the_stated_compute_type(voice, precision, tf32):
    """Every cuBLAS call a WaveGlow inference makes: strict FP32 -> cublasSgemm plus the upsample's
    strided-batched GEMM with COMPUTE_32F; tf32 -> every one with COMPUTE_32F_FAST_TF32 and no
    sgemm; FP16 -> COMPUTE_32F (FP16 operands, FP32 accumulation) as before."""
    from nvmath.bindings import cublas

    from tts_desktop.engine.waveglow import PackedWaveGlow, WaveGlowGpu

    config, _, ww = voice
    ctx = _GemmContext()
    wg = WaveGlowGpu(ctx, PackedWaveGlow.from_weights(config.waveglow, ww, fp16=precision == "fp16"), tf32=tf32)
    wg.infer(ctx.Array((2, 80, 5), np.float32), [5, 3], sigma=0.6)
    calls = ctx.blas._cb.calls
    names = [n for n, _ in calls]
    cfg = config.waveglow
    layers = cfg.n_flows * cfg.wn_n_layers
    res = 0 if precision == "fp16" and wg.fused else cfg.n_flows * (cfg.wn_n_layers - 1)
    assert names.count("gemm_strided_batched_ex") == 1 and len(calls) == 1 + layers + res
    want = cublas.ComputeType.COMPUTE_32F_FAST_TF32 if tf32 else cublas.ComputeType.COMPUTE_32F
    if precision == "fp32" and not tf32:
        assert names.count("sgemm") == layers + res  # strict: no compute type to choose, no TF32
        assert calls[0][1][-2] == want
    else:
        assert "sgemm" not in names and all(args[-2] == want for _, args in calls)


def test_voice_hash_of_a_folder_follows_its_files(voice, tmp_path):
    from tts_desktop.model.voice_files import TACOTRON2_FILE, save_voice

    config, tw, ww = voice
    folder = tmp_path / "v"
    save_voice(folder, config, tw, ww)
    h = B.voice_hash(folder, config, tw, ww)
    assert h.startswith("files:") and h == B.voice_hash(folder, config, tw, ww)
    f = folder / TACOTRON2_FILE
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    assert B.voice_hash(folder, config, tw, ww) != h
    assert B.voice_hash(None, config, tw, ww).startswith("arrays:")


def test_key_rejects_bad_arguments(voice):
    config, tw, ww = voice
    for bad in ({"precision": "int8"}, {"arch": "90"}, {"max_batch": 0}):
        with pytest.raises(ValueError):
            B.make_key(None, config, tw, ww, **{**KEY_ARGS, **bad})


# ------------------------------------------------------------------------------------- cache


def test_round_trip_and_cached_load(engine, voice, cache, monkeypatch):
    config, tw, ww = voice
    monkeypatch.setattr(B, "build_engine", lambda *a, **k: pytest.fail("rebuilt a valid cached engine"))
    t0 = time.perf_counter()
    again = B.get_engine(None, config, tw, ww, cache_dir=cache, **KEY_ARGS)
    seconds = time.perf_counter() - t0
    assert again.cached and again.path == engine.path and again.problems == []
    assert seconds < 1.0, seconds  # reduced sizes; docs/gpu-notes.md has the full-size number
    a, b = _tensors(engine.parts), _tensors(again.parts)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert [m["cubin"] for m in again.modules] == [m["cubin"] for m in engine.modules]
    assert [m["defines"] for m in again.modules] == [m["defines"] for m in engine.modules]
    assert type(again.parts["waveglow"]).__name__ == "PackedWaveGlow"
    assert again.parts["encoder"].config == T2


def _expect_rebuild(folder, key, voice, monkeypatch, match):
    with pytest.raises(B.EngineError, match=match):
        B.load_engine(folder, key)
    config, tw, ww = voice
    calls = []
    real = B.build_engine
    monkeypatch.setattr(B, "build_engine", lambda *a, **k: calls.append(1) or real(*a, **k))
    e = B.get_engine(None, config, tw, ww, cache_dir=folder.parent, **KEY_ARGS)
    assert calls == [1] and not e.cached and e.path == folder
    assert any(match.lower() in p.lower() for p in e.problems), e.problems
    B.load_engine(folder, key)  # repaired on disk


def test_truncated_payload_is_rebuilt(engine, voice, tmp_path, monkeypatch):
    folder = _copy_engine(engine, tmp_path)
    p = _payload(folder)
    p.write_bytes(p.read_bytes()[:-100])
    _expect_rebuild(folder, engine.key, voice, monkeypatch, "truncated")


def test_altered_payload_is_rebuilt(engine, voice, tmp_path, monkeypatch):
    folder = _copy_engine(engine, tmp_path)
    p = _payload(folder)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x40  # same size, one bit: only the checksum can tell
    p.write_bytes(bytes(data))
    _expect_rebuild(folder, engine.key, voice, monkeypatch, "checksum")


def test_missing_payload_is_rebuilt(engine, voice, tmp_path, monkeypatch):
    folder = _copy_engine(engine, tmp_path)
    _payload(folder).unlink()
    _expect_rebuild(folder, engine.key, voice, monkeypatch, "unreadable")


def test_foreign_engine_is_rebuilt(engine, voice, tmp_path, monkeypatch):
    """An intact engine for another key (here: another GPU) placed under this key's folder."""
    config, tw, ww = voice
    other = B.get_engine(None, config, tw, ww, cache_dir=tmp_path / "other", **{**KEY_ARGS, "gpu_name": "NVIDIA H200"})
    folder = tmp_path / engine.path.name
    shutil.copytree(other.path, folder)
    _expect_rebuild(folder, engine.key, voice, monkeypatch, "another key")


def test_garbage_manifest_is_rebuilt(engine, voice, tmp_path, monkeypatch):
    folder = _copy_engine(engine, tmp_path)
    (folder / B.MANIFEST).write_text("{ not json")
    _expect_rebuild(folder, engine.key, voice, monkeypatch, "unreadable manifest")


def test_manifest_cannot_name_a_file_outside_its_folder(engine, tmp_path):
    folder = _copy_engine(engine, tmp_path)
    m = json.loads((folder / B.MANIFEST).read_text())
    m["payload"]["file"] = "../" + m["payload"]["file"]
    (folder / B.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(B.EngineError, match="odd payload"):
        B.load_engine(folder, engine.key)


def test_manifest_cannot_name_other_classes(engine, tmp_path):
    """The skeleton (outside the checksum) may only name the whitelisted dataclasses."""
    folder = _copy_engine(engine, tmp_path)
    m = json.loads((folder / B.MANIFEST).read_text())
    m["skeleton"]["encoder"]["@class"] = "Popen"
    (folder / B.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(B.EngineError, match="does not parse"):
        B.load_engine(folder, engine.key)


def test_interrupted_save_keeps_the_previous_engine(engine, voice, tmp_path, monkeypatch):
    """A crash between the payload and the manifest leaves the old manifest and its payload: the
    folder still loads as before, and no partial file stays behind."""
    folder = _copy_engine(engine, tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    newer = B.Engine(engine.key, {**engine.parts, "decoder": {k: v + 1 for k, v in engine.parts["decoder"].items()}},
                     engine.modules)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == B.MANIFEST:
            raise KeyboardInterrupt  # the process dies right before the commit point
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        B.save_engine(newer, folder)
    monkeypatch.undo()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]
    e = B.load_engine(folder, engine.key)
    np.testing.assert_array_equal(e.parts["decoder"]["decoder.gate_layer.linear_layer.bias"],
                                  engine.parts["decoder"]["decoder.gate_layer.linear_layer.bias"])
    B.save_engine(newer, folder)  # a completed save replaces it and drops the old payload
    assert len(list(folder.glob("payload-*"))) == 1 and sorted(p.name for p in folder.iterdir()) != before
    assert B.load_engine(folder, engine.key).parts["decoder"]["decoder.gate_layer.linear_layer.bias"][0] == \
        engine.parts["decoder"]["decoder.gate_layer.linear_layer.bias"][0] + 1


def test_unwritable_cache_still_gives_an_engine(voice, tmp_path):
    config, tw, ww = voice
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    e = B.get_engine(None, config, tw, ww, cache_dir=blocker, **KEY_ARGS)
    assert e.modules and not e.cached and any("not cached" in p for p in e.problems)


def test_zero_copy_reader_equals_safetensors():
    from safetensors.numpy import load, save

    rng = np.random.default_rng(1)
    t = {"a": rng.standard_normal((3, 5)).astype(np.float16), "b": np.arange(7, dtype=np.int64),
         "c": np.frombuffer(b"cubin bytes", np.uint8), "d": np.zeros((0, 4), np.float32),
         "e": rng.standard_normal(9).astype(np.float32)}
    data = save(t)
    got, ref = B.safetensors_views(data), load(data)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape and np.array_equal(got[k], ref[k])
    assert not got["a"].flags.writeable  # views of the file, never written through
    with pytest.raises(B.EngineError, match="header length"):
        B.safetensors_views(data[:4] + b"\xff" * 4 + data[8:])


def test_tree_sha256():
    """Leaves of 8 MiB hashed in threads, then hashed together with the buffers' lengths: equal for
    equal bytes however they are split into buffers of the same lengths, different otherwise."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20 << 20) + 13, dtype=np.uint8)
    leaves = [hashlib.sha256(a[i: i + (8 << 20)]).digest() for i in range(0, a.size, 8 << 20)]
    h = hashlib.sha256(b"tree-sha256/8MiB\0" + a.size.to_bytes(8, "little") + b"".join(leaves)).hexdigest()
    assert B.tree_sha256([a]) == B.tree_sha256([a.tobytes()]) == h
    b = a.copy()
    b[-1] ^= 1
    assert B.tree_sha256([b]) != h
    assert B.tree_sha256([a[:5], a[5:]]) != h  # the split is part of what is hashed
    assert B.tree_sha256([b""]) == B.tree_sha256([np.zeros(0, np.uint8)])


def test_payload_checksum_matches_manifest(engine):
    m = json.loads((engine.path / B.MANIFEST).read_text())
    data = _payload(engine.path).read_bytes()
    assert m["payload"]["bytes"] == len(data) and m["payload"]["tree_sha256"] == B.tree_sha256([data])
    assert m["key"] == engine.key.to_dict() and m["digest"] == engine.key.digest()


# ------------------------------------------------------------------------------------- wiring


def test_preloaded_modules_are_what_the_context_hands_out(engine, monkeypatch):
    """GpuContext.compile must find the engine's cubins under the keys build.module_key makes, and
    never run NVRTC for them (checked on a context object built without a GPU)."""
    from tts_desktop.engine import runtime

    ctx = runtime.GpuContext.__new__(runtime.GpuContext)
    ctx._modules, ctx._lock, ctx.arch = {}, threading.Lock(), "sm_90"
    B.preload_modules(ctx, engine.modules)
    monkeypatch.setattr(runtime, "compile_cuda", lambda *a, **k: pytest.fail("NVRTC ran for a preloaded module"))
    for m in engine.modules:
        mod = runtime.GpuContext.compile(ctx, m["sources"], m["defines"], m["name_expressions"])
        assert bytes(mod.obj.code) == m["cubin"]


def test_plan_context_records_what_the_stages_compile(engine, voice):
    config = voice[0]
    reqs = B.compile_requests(config, engine.parts, "fp16", "sm_90")
    assert reqs == [{k: m[k] for k in ("sources", "defines", "name_expressions")} for m in engine.modules]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TTS_DESKTOP_ENGINES", str(tmp_path / "x"))
    assert B.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("TTS_DESKTOP_ENGINES")
    repo = Path(B.__file__).resolve().parents[2]
    if os.access(repo, os.W_OK):
        assert B.default_cache_dir() == repo / "engines"
    monkeypatch.setattr(B, "_PKG", tmp_path / "site-packages" / "tts_desktop")  # an installed package
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert B.default_cache_dir() == tmp_path / "xdg" / "tts-desktop" / "engines"
