"""The whole GPU pipeline (tts_desktop/engine/pipeline.py GpuBackend) against CpuBackend.

Same ids, dropout off, sigma 0 (then both backends compute the same function; with noise or
dropout on they draw different random numbers by design). The decode length is forced
(early_stop=False, a few dozen steps) for the numeric comparisons, so every frame is compared and
a free-running divergence cannot make the comparison meaningless; the stop semantics are tested
separately with gate thresholds placed between the items' gate trajectories.

Bounds (relative L2 per item):
- FP32 engine: everything <= 1e-4 (float32 arithmetic in another summation order; measured on the
  H100: 1e-7 .. 8e-7, reduced and full sizes).
- FP16 engine: weights and GEMM operands rounded to half (2^-11 ~ 4.9e-4 relative each); every
  stage accumulates in float32, so the output error is of the order of one rounding: measured
  2e-5 .. 6.5e-4 (mel 4.4e-4 .. 5.3e-4, audio 6e-5 .. 5e-4) over 24 .. 40 free-running steps.
  Bound 5e-3, ten times that: a layout or indexing error gives O(1) errors, a lost FP32
  accumulation (half accumulators over ~1000-term dot products) ~1e-2.
- FP32 engine with TF32 GEMMs ('tf32' here: GpuBackend(precision='fp32', tf32=True)): only
  WaveGlow's GEMMs change, so mel, gate and alignment keep the FP32 bound (and are bit-equal to the
  strict engine's: same kernels, same cuBLAS calls), the audio gets FP16's 5e-3: TF32 rounds the
  GEMM operands to FP16's 10-bit mantissa. Emulated on the CPU for these very voices and inputs
  (tests/gpu/emulate_tf32.py, WaveGlow at sigma 0): reduced 6.1e-5 (round to nearest) / 2.0e-4
  (truncation), full 3.4e-4 / 1.4e-3; 5e-3 is 3.5x the worst of them.
- batch item vs the same item alone (same engine): FP32 1e-5, FP16 5e-3 (cuBLAS may choose another
  algorithm for another row count; in FP16 a reordered sum can flip the last bit of a half output).
  In FP32 the items also stop at ragged steps (a gate threshold in a gap of the gate values); in
  FP16 the length is forced, as a stop decision within a rounding of the threshold could flip.
  TF32: 1e-5 for mel, gate and alignment (strict FP32 there) and 5e-3 for the audio (for another
  row count cuBLAS may pick a kernel that does not use TF32 at all); ragged stops as in FP32.
Measured values are written to $TTS_DESKTOP_TEST_OUT/pipeline_gpu.json when that is set.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import numpy as np
import pytest

from gpu_common import gpu_or_skip, golden_small, rel_l2

pytestmark = pytest.mark.gpu
gpu_or_skip()

from tts_desktop.api import SynthesisOptions  # noqa: E402
from tts_desktop.backends import CpuBackend  # noqa: E402
from tts_desktop.cancel import SynthesisCancelled  # noqa: E402
from tts_desktop.engine import pipeline  # noqa: E402
from tts_desktop.engine.pipeline import GpuBackend  # noqa: E402
from tts_desktop.model.config import Tacotron2Config, VoiceConfig, WaveGlowConfig  # noqa: E402
from tts_desktop.model.random_voice import random_voice  # noqa: E402
from tts_desktop.model.tacotron2 import sigmoid  # noqa: E402
from tts_desktop.model.voice_files import load_voice  # noqa: E402

RED_T2 = Tacotron2Config(symbols_embedding_dim=128, encoder_embedding_dim=128, attention_rnn_dim=64,
                         attention_dim=32, attention_location_n_filters=8, attention_location_kernel_size=7,
                         decoder_rnn_dim=96, prenet_dim=32, postnet_embedding_dim=64, max_decoder_steps=40)
RED_WG = WaveGlowConfig(n_flows=6, wn_n_layers=3, wn_n_channels=64)
# the bundled demo voice's shape: full Tacotron2, WaveGlow of 8 flows x 8 layers x 128 channels
# (wg_layer_fused at 128 channels: the benchmark's voice has 256)
DEMO_WG = WaveGlowConfig(n_flows=8, wn_n_layers=8, wn_n_channels=128)
TOL = {"fp32": {"mel": 1e-4, "gate": 1e-4, "alignment": 1e-4, "audio": 1e-4},
       "fp16": {"mel": 5e-3, "gate": 5e-3, "alignment": 5e-3, "audio": 5e-3},
       "tf32": {"mel": 1e-4, "gate": 1e-4, "alignment": 1e-4, "audio": 5e-3}}
BATCH_TOL = {"fp32": {"mel": 1e-5, "gate": 1e-5, "alignment": 1e-5, "audio": 1e-5},
             "fp16": {"mel": 5e-3, "gate": 5e-3, "alignment": 5e-3, "audio": 5e-3},
             "tf32": {"mel": 1e-5, "gate": 1e-5, "alignment": 1e-5, "audio": 5e-3}}
# test precision -> GpuBackend arguments ('tf32': the FP32 engine with TF32 GEMMs in WaveGlow)
ENGINE = {"fp32": dict(precision="fp32"), "fp16": dict(precision="fp16"),
          "tf32": dict(precision="fp32", tf32=True)}
OFF = dict(prenet_dropout=False, sigma=0.0, denoise=0.01)
MEASURED: dict[str, object] = {}


def teardown_module():
    out = os.environ.get("TTS_DESKTOP_TEST_OUT")
    if out and MEASURED:
        with open(os.path.join(out, "pipeline_gpu.json"), "w") as f:
            json.dump(MEASURED, f, indent=1, default=float)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


_voices: dict = {}
_backends: dict = {}


def voice(name: str, gate_threshold: float | None = None):
    key = (name, gate_threshold)
    if key not in _voices:
        if name == "reduced":
            config, tw, ww = random_voice(RED_T2, RED_WG, seed=4)
        elif name == "full":
            config, tw, ww = random_voice(seed=0)  # the benchmark's voice
        elif name == "demo-shape":
            config, tw, ww = random_voice(Tacotron2Config(), DEMO_WG, seed=2)
        elif name == "trained":
            config, tw, ww = load_voice(trained_voice_or_skip())
        else:
            raise KeyError(name)
        if gate_threshold is not None:
            config = replace(config, tacotron2=replace(config.tacotron2, gate_threshold=gate_threshold))
        _voices[key] = (config, tw, ww)
    return _voices[key]


def trained_voice_or_skip():
    """$TTS_DESKTOP_TEST_VOICE, else the bundled demo voice. On the GPU machine the demo voice is
    not in the working tree (it is larger than a call carries: scripts/device/voice_aside.sh), so
    a training lease builds it there from the shards and names it (docs/training.md)."""
    from pathlib import Path

    named = os.environ.get("TTS_DESKTOP_TEST_VOICE")
    path = Path(named) if named else Path(__file__).resolve().parents[2] / "resources" / "voices" / "demo"
    if not (path / "voice.json").is_file():
        pytest.skip(f"no trained voice at {path} (set TTS_DESKTOP_TEST_VOICE to a voice folder)")
    return path


def gpu(cache, name, precision, gate_threshold=None):
    key = (name, precision, gate_threshold)
    if key not in _backends:
        config, tw, ww = voice(name, gate_threshold)
        _backends[key] = GpuBackend(None, config, tw, ww, cache_dir=cache, **ENGINE[precision])
    return _backends[key]


def cpu(name, gate_threshold=None):
    key = ("cpu", name, gate_threshold)
    if key not in _backends:
        _backends[key] = CpuBackend(*voice(name, gate_threshold))
    return _backends[key]


def ids_batch(rng, lengths, n_symbols=148):
    return [rng.integers(1, n_symbols, n).tolist() for n in lengths]


def errors(a, b) -> dict[str, float]:
    return {"mel": rel_l2(a.mel, b.mel), "gate": rel_l2(a.gate, b.gate), "alignment": rel_l2(a.alignment, b.alignment),
            "audio": rel_l2(a.audio, b.audio)}


def same_shapes(a, b) -> None:
    assert a.mel.shape == b.mel.shape and a.alignment.shape == b.alignment.shape
    assert a.gate.shape == b.gate.shape and a.audio.shape == b.audio.shape


def stop_is_clear(gate: np.ndarray, thr: float, margin: float) -> bool:
    """No step's sigmoid(gate) lies within `margin` of the threshold (a stop decision that float
    rounding cannot flip)."""
    return bool(np.all(np.abs(sigmoid(gate) - thr) > margin))


# ------------------------------------------------------------------------------------- vs CPU


@pytest.mark.parametrize("precision", ["fp32", "fp16", "tf32"])
@pytest.mark.parametrize("name,steps", [("reduced", 40), ("full", 24), ("demo-shape", 24)])
def test_matches_cpu_backend(cache, name, steps, precision):
    rng = np.random.default_rng(1)
    batch = ids_batch(rng, [37, 12, 61] if name == "reduced" else [128, 40])
    opts = SynthesisOptions(max_decoder_steps=steps, early_stop=False, **OFF)
    got = gpu(cache, name, precision).synthesize_ids(batch, opts, seed=5)
    ref = cpu(name).synthesize_ids(batch, opts, seed=5)
    thr = voice(name)[0].tacotron2.gate_threshold
    for i, (g, r) in enumerate(zip(got, ref)):
        same_shapes(g, r)
        assert g.mel.shape[1] == steps and len(g.audio) == steps * 256
        e = errors(g, r)
        MEASURED[f"vs_cpu/{name}/{precision}/item{i}"] = e
        assert all(e[k] <= TOL[precision][k] for k in e), e
        if precision in ("fp32", "tf32") or stop_is_clear(r.gate, thr, 1e-3):  # tf32: the gate is strict
            assert g.reached_max_steps == r.reached_max_steps
        assert set(g.timings) == {"encoder", "decoder", "postnet", "waveglow", "denoiser", "copies"}
        assert all(v > 0 for v in g.timings.values()), g.timings


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trained_voice_matches_cpu_backend(cache, precision):
    """A trained voice (the demo voice, or $TTS_DESKTOP_TEST_VOICE) on real text: its sharp
    attention and its WaveGlow's real activations, where random weights give neither. 150 forced
    steps of two sentences, dropout off, sigma 0; the same bounds as the random voices."""
    from tts_desktop.text import text_to_sequence

    batch = [text_to_sequence("The demo voice speaks on the graphics card."),
             text_to_sequence("Printing, in the only sense with which we are at present concerned, differs.")]
    opts = SynthesisOptions(max_decoder_steps=150, early_stop=False, **OFF)
    got = gpu(cache, "trained", precision).synthesize_ids(batch, opts, seed=5)
    ref = cpu("trained").synthesize_ids(batch, opts, seed=5)
    for i, (g, r) in enumerate(zip(got, ref)):
        same_shapes(g, r)
        e = errors(g, r)
        MEASURED[f"vs_cpu/trained/{precision}/item{i}"] = e
        assert all(e[k] <= TOL[precision][k] for k in e), e
        assert np.abs(r.audio).max() > 0.05  # the comparison is of speech, not of near-silence


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_golden_voice_matches_nvidia_and_cpu_backend(cache, precision):
    """NVIDIA's small golden model (.fixtures: encoder 64, attention 32, LSTMs 96), its 48 forced
    steps, sigma 0, denoiser 0.01: the whole GPU pipeline against the arrays NVIDIA's PyTorch code
    wrote (postnet mel, gate, alignment, denoised audio) and against CpuBackend, at TOL[precision]
    (the CPU reference itself is within 1e-6 of NVIDIA's here)."""
    golden, ww, wcfg, tw, tcfg = golden_small()
    config = VoiceConfig(name="golden", tacotron2=Tacotron2Config.from_dict(tcfg), waveglow=WaveGlowConfig.from_dict(wcfg))
    assert config.tacotron2.encoder_embedding_dim == 64  # the size decoder.cu once refused (CTX_D 128)
    backend = GpuBackend(None, config, tw, ww, cache_dir=cache, **ENGINE[precision])
    ids = [np.asarray(golden["ids"]).tolist()]
    opts = SynthesisOptions(max_decoder_steps=int(golden["steps"]), early_stop=False,
                            **{**OFF, "denoise": float(golden["strength"])})
    assert float(golden["sigma"]) == OFF["sigma"]
    g = backend.synthesize_ids(ids, opts)[0]
    r = CpuBackend(config, tw, ww).synthesize_ids(ids, opts)[0]
    same_shapes(g, r)
    e = errors(g, r)
    nvidia = {"mel": rel_l2(g.mel, golden["mel_postnet"][0]), "gate": rel_l2(g.gate, golden["gate"][0]),
              "alignment": rel_l2(g.alignment, golden["alignment"].T),  # NVIDIA: (T_in, T_out)
              "audio": rel_l2(g.audio, golden["denoised"][0])}
    MEASURED[f"vs_cpu/golden/{precision}"] = e
    MEASURED[f"vs_nvidia/golden/{precision}"] = nvidia
    assert all(e[k] <= TOL[precision][k] for k in e), e
    assert all(nvidia[k] <= TOL[precision][k] for k in nvidia), nvidia


def _separating_threshold(gates: list[np.ndarray]) -> tuple[float, float]:
    """(threshold, margin): of the thresholds under which the items stop at three or more different
    steps (the cap counts as one), the one in the widest gap between the items' sigmoid(gate)
    values; no stop decision lies within `margin` of it."""
    p = [sigmoid(np.asarray(g, np.float64)) for g in gates]
    v = np.unique(np.concatenate(p))
    best = (None, -1.0)
    for lo, hi in zip(v[:-1], v[1:]):
        thr = (lo + hi) / 2
        stops = {int(np.argmax(q > thr)) if (q > thr).any() else -1 for q in p}
        if len(stops) >= 3 and (hi - lo) / 2 > best[1]:
            best = (float(thr), float(hi - lo) / 2)
    assert best[0] is not None, "no threshold gives three different stop steps"
    return best


@pytest.mark.parametrize("precision", ["fp32", "fp16", "tf32"])
def test_batch_items_equal_each_item_alone(cache, precision):
    """Batches of 1, 2, 3, 8 and 32 items of ragged input lengths (in FP32, strict or with TF32
    WaveGlow, also stopping at ragged steps): each item as if alone."""
    rng = np.random.default_rng(2)
    steps = 30
    items = ids_batch(rng, rng.integers(3, 70, 32))
    batches = {1: items[:1], 2: items[1:3], 3: items[3:6], 8: items[6:14], 32: items}
    free = SynthesisOptions(max_decoder_steps=steps, early_stop=False, **OFF)
    ragged_stops = precision in ("fp32", "tf32")  # the decoder (and so the gate) is strict FP32 in both
    if ragged_stops:
        probe = gpu(cache, "reduced", precision).synthesize_ids(items, free)
        thr, margin = _separating_threshold([r.gate for r in probe])
        assert margin > 1e-5, margin  # 100x the FP32 batch-vs-alone differences
        backend, opts = gpu(cache, "reduced", precision, gate_threshold=thr), replace(free, early_stop=True)
    else:
        thr, margin = None, None
        backend, opts = gpu(cache, "reduced", precision), free
    worst = 0.0
    frames = set()
    for n, batch in batches.items():
        together = backend.synthesize_ids(batch, opts, seed=9)
        assert len(together) == n
        for i, ids in enumerate(batch):
            alone = backend.synthesize_ids([ids], opts, seed=9)[0]
            t = together[i]
            assert t.reached_max_steps == alone.reached_max_steps
            same_shapes(t, alone)
            e = errors(t, alone)
            worst = max(worst, *e.values())
            assert all(e[k] <= BATCH_TOL[precision][k] for k in e), (n, i, e)
            frames.add(t.mel.shape[1])
    MEASURED[f"batch_vs_alone/{precision}"] = {"worst_rel_l2": worst, "distinct_frame_counts": len(frames),
                                               "threshold": thr, "margin": margin}
    if ragged_stops:
        assert len(frames) >= 3  # the items did stop at different steps


# ------------------------------------------------------------------------------------- stopping


def test_early_stop_semantics_equal_cpu(cache):
    """Frame counts, audio lengths (the stop frame is in the mel, not in the audio) and
    reached_max_steps: item for item as CpuBackend, early_stop on and off."""
    rng = np.random.default_rng(3)
    batch = ids_batch(rng, [20, 45, 7, 33])
    steps = 32
    free = cpu("reduced").synthesize_ids(batch, SynthesisOptions(max_decoder_steps=steps, early_stop=False, **OFF))
    thr, _ = _separating_threshold([r.gate for r in free])
    for early in (True, False):
        opts = SynthesisOptions(max_decoder_steps=steps, early_stop=early, **OFF)
        got = gpu(cache, "reduced", "fp32", gate_threshold=thr).synthesize_ids(batch, opts)
        ref = cpu("reduced", gate_threshold=thr).synthesize_ids(batch, opts)
        for g, r in zip(got, ref):
            same_shapes(g, r)
            assert g.reached_max_steps == r.reached_max_steps
            assert max(errors(g, r).values()) <= TOL["fp32"]["audio"]
        if early:
            assert len({r.mel.shape[1] for r in ref}) >= 2 and any(len(r.audio) < 256 * r.mel.shape[1] for r in ref)


@pytest.mark.parametrize("bias,first_stop", [(50.0, True), (-50.0, False)])
def test_gate_always_or_never_fires(cache, bias, first_stop):
    """Gate bias +50: every item stops on step 0 (1 mel frame, no audio; the 256-sample WaveGlow
    output is too short for the GPU denoiser, so its host fallback runs). -50: the cap."""
    config, tw, ww = voice("reduced")
    tw = dict(tw)
    tw["decoder.gate_layer.linear_layer.bias"] = np.full(1, bias, np.float32)
    backend = GpuBackend(None, config, tw, ww, precision="fp32", cache_dir=cache)
    ref = CpuBackend(config, tw, ww)
    batch = ids_batch(np.random.default_rng(4), [9, 30])
    opts = SynthesisOptions(max_decoder_steps=12, **OFF)
    for g, r in zip(backend.synthesize_ids(batch, opts), ref.synthesize_ids(batch, opts)):
        same_shapes(g, r)
        assert g.reached_max_steps == r.reached_max_steps == (not first_stop)
        assert g.mel.shape[1] == (1 if first_stop else 12) and len(g.audio) == (0 if first_stop else 12 * 256)
        assert rel_l2(g.mel, r.mel) <= TOL["fp32"]["mel"]


# ------------------------------------------------------------------------------------- randomness


def test_seeded_dropout_and_noise(cache):
    backend = gpu(cache, "reduced", "fp16")
    batch = ids_batch(np.random.default_rng(5), [25])
    on = SynthesisOptions(max_decoder_steps=20, early_stop=False, prenet_dropout=True, sigma=0.6)
    a, b, c = (backend.synthesize_ids(batch, on, seed=s)[0] for s in (1, 1, 2))
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.mel, b.mel)
    assert rel_l2(c.mel, a.mel) > 1e-2 and rel_l2(c.audio, a.audio) > 1e-2
    quiet = backend.synthesize_ids(batch, replace(on, prenet_dropout=False, sigma=0.0), seed=1)[0]
    assert rel_l2(quiet.mel, a.mel) > 1e-2 and rel_l2(quiet.audio, a.audio) > 1e-2


def test_griffin_lim_runs_on_the_gpu_mel(cache):
    backend = gpu(cache, "reduced", "fp32")
    batch = ids_batch(np.random.default_rng(6), [15])
    opts = SynthesisOptions(max_decoder_steps=10, early_stop=False, vocoder="griffin-lim", **OFF)
    g = backend.synthesize_ids(batch, opts, seed=3)[0]
    r = cpu("reduced").synthesize_ids(batch, opts, seed=3)[0]
    same_shapes(g, r)
    assert "griffin_lim" in g.timings and "waveglow" not in g.timings
    assert rel_l2(g.mel, r.mel) <= TOL["fp32"]["mel"]
    assert rel_l2(g.audio, r.audio) <= 1e-2  # 60 iterations of phase recovery amplify the mel's 1e-6


# ------------------------------------------------------------------------------------- cancel


def test_cancel_at_every_check_leaves_the_engine_usable(cache, monkeypatch):
    monkeypatch.setattr(pipeline, "WG_GROUP_FRAMES", {"fp16": 30, "fp32": 30})  # several WaveGlow groups
    backend = gpu(cache, "reduced", "fp16")
    batch = ids_batch(np.random.default_rng(7), [30, 10, 50])
    opts = SynthesisOptions(max_decoder_steps=40, early_stop=False, **OFF)
    calls = []
    first = backend.synthesize_ids(batch, opts, cancel=lambda: calls.append(1) and False)
    n = len(calls)
    assert n >= 5  # before the stages, after decoder chunks, after WaveGlow groups
    for k in range(1, n + 1):
        count = iter(range(1, 10**6))
        with pytest.raises(SynthesisCancelled):
            backend.synthesize_ids(batch, opts, cancel=lambda: next(count) == k)
    again = backend.synthesize_ids(batch, opts)
    for a, b in zip(first, again):
        assert np.array_equal(a.audio, b.audio) and np.array_equal(a.mel, b.mel)


def test_cancel_lands_quickly_in_a_long_decode(cache):
    """2000 forced decoder steps at NVIDIA's sizes: a cancel raised a few chunks in takes effect
    within 100 ms."""
    backend = gpu(cache, "full", "fp16")
    batch = ids_batch(np.random.default_rng(8), [128])
    opts = SynthesisOptions(max_decoder_steps=2000, early_stop=False, **OFF)
    backend.synthesize_ids(batch, replace(opts, max_decoder_steps=64))  # warm: plan, graph
    state = {"n": 0, "t": None}

    def cancel():
        state["n"] += 1
        if state["n"] == 6:
            state["t"] = time.perf_counter()
            return True
        return False

    t0 = time.perf_counter()
    with pytest.raises(SynthesisCancelled):
        backend.synthesize_ids(batch, opts, cancel=cancel)
    lag = time.perf_counter() - state["t"]
    MEASURED["cancel_lag_s"] = lag
    MEASURED["cancel_total_s"] = time.perf_counter() - t0
    assert lag < 0.1, lag


# ------------------------------------------------------------------------------------- engine


def test_cached_engine_loads_in_well_under_a_second(cache):
    config, tw, ww = voice("full")
    first = GpuBackend(None, config, tw, ww, precision="fp16", cache_dir=cache)
    again = GpuBackend(None, config, tw, ww, precision="fp16", cache_dir=cache)
    MEASURED["engine_full_fp16"] = {"first_s": first.load_seconds, "first_cached": first.engine.cached,
                                    "build_s": first.engine.seconds if not first.engine.cached else None,
                                    "cached_load_s": again.load_seconds, "breakdown_s": again.load_breakdown}
    assert again.engine.cached and "cached" in again.note and again.compiled_at_load == 0
    assert again.device_name == again.ctx.name and "FP16 engine" in again.note
    assert again.load_seconds < 1.0, MEASURED["engine_full_fp16"]
    batch = ids_batch(np.random.default_rng(9), [50])
    opts = SynthesisOptions(max_decoder_steps=16, early_stop=False, **OFF)
    a, b = first.synthesize_ids(batch, opts)[0], again.synthesize_ids(batch, opts)[0]
    assert np.array_equal(a.audio, b.audio)


def test_tf32_engine_is_stated_cached_apart_and_touches_only_the_audio(cache):
    """The TF32 engine is its own cache entry and says so in its note; next to the strict FP32 engine
    (same voice, same process, one cuBLAS handle) its mel, gate and alignment are bit-equal to the
    strict one's and only its audio differs, within the TF32 bound."""
    strict, fast = gpu(cache, "reduced", "fp32"), gpu(cache, "reduced", "tf32")
    assert fast.engine.key.tf32 and not strict.engine.key.tf32 and fast.engine.path != strict.engine.path
    assert "-fp32-tf32-" in fast.engine.path.name and "-tf32-" not in strict.engine.path.name
    assert "TF32" in fast.note and "FP32 engine" in fast.note and "TF32" not in strict.note
    assert fast.stages["waveglow"].tf32 and not strict.stages["waveglow"].tf32
    batch = ids_batch(np.random.default_rng(10), [33, 18])
    opts = SynthesisOptions(max_decoder_steps=24, early_stop=False, **OFF)
    before = strict.synthesize_ids(batch, opts, seed=2)
    got = fast.synthesize_ids(batch, opts, seed=2)
    after = strict.synthesize_ids(batch, opts, seed=2)
    for s, f, s2 in zip(before, got, after):
        for k in ("mel", "gate", "alignment", "audio"):
            assert np.array_equal(getattr(s, k), getattr(s2, k)), f"the TF32 engine changed the strict one's {k}"
        for k in ("mel", "gate", "alignment"):
            assert np.array_equal(getattr(s, k), getattr(f, k)), f"TF32 reached {k}: it must stay in WaveGlow"
        same_shapes(s, f)
        assert rel_l2(f.audio, s.audio) <= TOL["tf32"]["audio"]
        if os.environ.get("NVIDIA_TF32_OVERRIDE") != "0":  # that setting makes cuBLAS ignore TF32
            assert not np.array_equal(f.audio, s.audio), "the TF32 engine's audio is bit-equal to strict FP32"
    config, tw, ww = voice("reduced")
    with pytest.raises(ValueError, match="FP32 engine only"):
        GpuBackend(None, config, tw, ww, precision="fp16", tf32=True, cache_dir=cache)


def test_rejects_what_cpu_backend_rejects(cache):
    backend = gpu(cache, "reduced", "fp32")
    opts = SynthesisOptions(max_decoder_steps=5)
    with pytest.raises(ValueError):
        backend.synthesize_ids([[1, 2], []], opts)
    with pytest.raises(ValueError):
        backend.synthesize_ids([[1, 2, 400]], opts)
    with pytest.raises(ValueError):
        backend.synthesize_ids([[1]] * 33, opts)


def test_voice_builds_on_another_thread_while_the_current_voice_serves(tmp_path, monkeypatch):
    """api.VoiceLoad as the GUI's worker uses it: constructed and finished on the owning thread,
    run (engine pack + NVRTC) on a build thread while the owning thread keeps synthesizing with the
    voice in use. The build thread never touches the device (every GpuContext / DeviceArray entry
    point records its caller), and the voice it builds gives what Voice.load gives."""
    import threading

    from tts_desktop.api import Voice, VoiceLoad
    from tts_desktop.engine import runtime
    from tts_desktop.model.voice_files import save_voice

    folder = save_voice(tmp_path / "reduced", *voice("reduced"))
    monkeypatch.setenv("TTS_DESKTOP_ENGINES", str(tmp_path / "engines"))
    opts = SynthesisOptions(max_decoder_steps=24, early_stop=False, **OFF)
    old = Voice.load(folder, device="cuda", precision="fp16")
    first = old.synthesize("Served while the new engine builds.", opts).audio

    callers: set[int] = set()
    with monkeypatch.context() as m:
        for cls, names in ((runtime.GpuContext, ("launch", "alloc", "to_device", "synchronize", "record",
                                                 "graph_builder", "set_max_dynamic_shmem")),
                           (runtime.DeviceArray, ("copy_from", "to_host", "copy_from_device", "fill_bytes"))):
            for name in names:
                real = getattr(cls, name)

                def spy(*a, _real=real, **k):
                    callers.add(threading.get_ident())
                    return _real(*a, **k)

                m.setattr(cls, name, spy)

        loading = VoiceLoad(folder, device="cuda", precision="fp32")
        steps: list[str] = []
        build = threading.Thread(target=loading.run, kwargs={"progress": lambda f, m: steps.append(m)})
        build.start()
        served = 0
        while build.is_alive() or served == 0:           # the owning thread keeps serving meanwhile
            assert np.array_equal(old.synthesize("Served while the new engine builds.", opts).audio, first)
            served += 1
        build.join()
        assert any("compiling" in m for m in steps), steps  # a real build, not a cached engine
        assert build.ident not in callers and threading.get_ident() in callers
        new = loading.finish()
    assert new.device != "cpu", new.device_note
    text = "The voice built on another thread."
    got = new.synthesize(text, opts).audio
    want = Voice.load(folder, device="cuda", precision="fp32").synthesize(text, opts).audio
    assert got.shape == want.shape and rel_l2(got, want) <= 1e-6
