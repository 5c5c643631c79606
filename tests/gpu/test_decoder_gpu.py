"""GPU decoder (kernels/decoder.cu + tts_desktop/engine/decoder.py) against NumPy.

Every kernel alone on random state with its outputs NaN-poisoned first, then the whole decoder
teacher-forced against tts_desktop.model.tacotron2.Tacotron2.decode (errors cannot compound), then
free-running, then batch-vs-alone and the seeded dropout. Reduced AND NVIDIA's full sizes, batches
1..32 with ragged lengths.

Tolerances. FP32 engine: relative L2 error <= 1e-4 (float32 arithmetic, other summation order).
FP16 engine: its weights and the encoder memory are rounded to half precision, everything else is
float. Against a reference given the SAME rounded weights and memory the function is identical up
to summation order, so the FP32 bound holds (1e-4 teacher-forced). Against the unrounded reference
the difference is the rounding itself (relative 2^-11 per weight, averaging down over dot products of
~1000 terms): bounded at 2e-2 teacher-forced, recorded in docs/gpu-notes.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gpu_common import gpu_or_skip, rel_l2

gpu_or_skip()

from tts_desktop.engine.decoder import GpuDecoder, pack_decoder_weights  # noqa: E402
from tts_desktop.engine.runtime import GpuContext  # noqa: E402
from tts_desktop.model.config import Tacotron2Config  # noqa: E402
from tts_desktop.model.tacotron2 import Tacotron2, lstm_gates, sigmoid  # noqa: E402

pytestmark = pytest.mark.gpu

_spec = importlib.util.spec_from_file_location(
    "_t2ref", Path(__file__).resolve().parents[1] / "test_tacotron2_reference.py")
_t2ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_t2ref)
random_weights = _t2ref.random_weights

# reduced sizes that meet decoder.cu's constraints (multiples of 8; ATT_DIM in 32..256): every code
# path, fast. ENC 64 as in NVIDIA's golden model: dec_att_context then runs 64-dim blocks (FULL: 128)
RED = Tacotron2Config(symbols_embedding_dim=32, encoder_embedding_dim=64, attention_rnn_dim=64,
                      attention_dim=32, attention_location_n_filters=8, attention_location_kernel_size=7,
                      decoder_rnn_dim=96, prenet_dim=32, postnet_embedding_dim=32, max_decoder_steps=40)
FULL = Tacotron2Config()
TOL32 = 1e-4
TOL16_UNROUNDED = 2e-2
NEVER = 2.0  # a gate threshold sigmoid never exceeds: numeric tests run every step


@pytest.fixture(scope="module")
def ctx():
    return GpuContext()


_models: dict = {}


def model(ctx, cfg, precision, seed=0):
    key = (id(cfg), precision, seed)
    if key not in _models:
        rng = np.random.default_rng(seed)
        w = random_weights(cfg, rng)
        ref = Tacotron2(cfg, w)
        # the reference of the FP16 engine: the same half-rounded weights
        w16 = {k: (v.astype(np.float16).astype(np.float32) if k.startswith("decoder.") else v) for k, v in w.items()}
        # location conv/dense, v and biases stay float on the GPU: restore them
        for k in w:
            if ("location_layer" in k or k.endswith("v.linear_layer.weight") or k.endswith("bias")
                    or "bias_" in k):
                w16[k] = w[k]
        ref16 = Tacotron2(cfg, w16)
        _models[key] = (GpuDecoder(ctx, cfg, w, precision=precision), ref, ref16, w)
    return _models[key]


def inputs(cfg, B, rng, t_in_max=None, n_teacher=None):
    t_in_max = t_in_max or 23
    lengths = rng.integers(max(1, t_in_max // 3), t_in_max + 1, B)
    lengths[rng.integers(B)] = t_in_max
    mem = rng.standard_normal((B, t_in_max, cfg.encoder_embedding_dim)).astype(np.float32)
    mem *= (np.arange(t_in_max)[None, :, None] < lengths[:, None, None])  # encoder output is 0 on padding
    teacher = None
    if n_teacher:
        teacher = rng.standard_normal((B, cfg.n_mel_channels, n_teacher)).astype(np.float32)
    return mem, lengths, teacher


def compare(out, ref, nf=None):
    """Errors over each item's valid frames (the reference fills the rest; so does the GPU)."""
    assert out.steps == ref.mel.shape[2], (out.steps, ref.mel.shape)
    np.testing.assert_array_equal(out.lengths, ref.lengths)
    np.testing.assert_array_equal(out.n_frames, ref.n_frames)
    e = {"mel": rel_l2(out.mel, ref.mel), "gate": rel_l2(out.gate, ref.gate),
         "align": rel_l2(out.alignment, ref.alignment)}
    return e


# ------------------------------------------------------------------------------------- kernels


def _plan_with_state(dec, cfg, B, T_in, rng, lengths):
    p = dec.plan(B, T_in, 4, 0, True, NEVER, "chunk", 1, 1)
    mem = rng.standard_normal((B, T_in, cfg.encoder_embedding_dim)).astype(np.float32)
    dec.prepare(p, mem, lengths, max_steps=4, dropout=False)
    dec.ctx.synchronize()
    return p, mem


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("cfg", [RED, FULL], ids=["reduced", "full"])
@pytest.mark.parametrize("B", [1, 3, 17, 32])
def test_kernels_one_step(ctx, cfg, precision, B):
    """Each kernel on fresh random state against NumPy, outputs poisoned first."""
    dec, ref, ref16, _ = model(ctx, cfg, precision)
    r = ref16 if precision == "fp16" else ref
    rng = np.random.default_rng(100 + B)
    T_in = 37 if cfg is RED else 150
    lengths = rng.integers(1, T_in + 1, B)
    lengths[0] = T_in
    p, mem = _plan_with_state(dec, cfg, B, T_in, rng, lengths)
    if precision == "fp16":
        mem = mem.astype(np.float16).astype(np.float32)
    R, D, E, P = cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.encoder_embedding_dim, cfg.prenet_dim
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    s = p.s

    # attention LSTM: reads h_att[0], writes h_att[1]
    h0, c0, pre, ctxv = f(B, R), f(B, R), np.abs(f(B, P)), f(B, E)
    s["h_att"].copy_from(np.concatenate([h0, np.full_like(h0, np.nan)]))
    s["c_att"].copy_from(c0)
    s["prenet"].copy_from(pre)
    s["ctx"].copy_from(ctxv)
    p.launch_lstm_att()
    h_ref, c_ref = lstm_gates(np.concatenate([pre, ctxv, h0], 1) @ r.att_rnn_w + r.att_rnn_b, c0)
    h_att = s["h_att"].to_host().reshape(2, B, R)
    assert rel_l2(h_att[1], h_ref) <= TOL32
    assert rel_l2(s["c_att"].to_host().reshape(B, R), c_ref) <= TOL32
    np.testing.assert_array_equal(h_att[0], h0)  # the other half untouched

    # energies: query + location features + processed memory, masked
    aw = rng.dirichlet(np.ones(T_in), B).astype(np.float32)
    cum = (aw + rng.random((B, T_in))).astype(np.float32)
    s["aw"].copy_from(aw)
    s["cum"].copy_from(cum)
    p.energy.poison()
    p.launch_energy()
    e = p.energy.to_host().astype(np.float64).sum(0)  # the partials of the attention-dim slices
    pm = mem @ r.memory_w
    masked = np.arange(T_in)[None] >= lengths[:, None]
    # the reference's _attend returns the softmax; rebuild the energies it takes the softmax of
    pad = (r.loc_k - 1) // 2
    prev = np.pad(np.stack([aw, cum], 1), ((0, 0), (0, 0), (pad, pad)))
    cols = np.lib.stride_tricks.sliding_window_view(prev, r.loc_k, axis=2).transpose(0, 2, 1, 3).reshape(B, T_in, -1)
    e_ref = np.tanh((h_att[1] @ r.query_w)[:, None] + cols @ r.loc_w + pm) @ r.v
    assert np.all(np.isneginf(e[masked]))
    assert rel_l2(e[~masked], e_ref[~masked]) <= TOL32

    # softmax + context + cumulative weights + alignment row
    p.align.poison()
    s["ctx"].poison()
    p.launch_context()
    w_ref = r._attend(h_att[1], aw, cum, pm, masked)
    assert rel_l2(s["aw"].to_host().reshape(B, T_in), w_ref) <= TOL32
    assert rel_l2(s["cum"].to_host().reshape(B, T_in), cum + w_ref) <= TOL32
    ctx_ref = np.matmul(w_ref[:, None], mem)[:, 0]
    ctx_gpu = s["ctx"].to_host().reshape(B, E)
    assert rel_l2(ctx_gpu, ctx_ref) <= TOL32
    assert rel_l2(p.align.to_host()[:, 0], w_ref) <= TOL32

    # decoder LSTM: reads h_att[1], ctx, h_dec[0]; writes h_dec[1]
    hd0, cd0 = f(B, D), f(B, D)
    s["h_dec"].copy_from(np.concatenate([hd0, np.full_like(hd0, np.nan)]))
    s["c_dec"].copy_from(cd0)
    p.launch_lstm_dec()
    hd_ref, cd_ref = lstm_gates(np.concatenate([h_att[1], ctx_gpu, hd0], 1) @ r.dec_rnn_w + r.dec_rnn_b, cd0)
    h_dec = s["h_dec"].to_host().reshape(2, B, D)
    assert rel_l2(h_dec[1], hd_ref) <= TOL32
    assert rel_l2(s["c_dec"].to_host().reshape(B, D), cd_ref) <= TOL32

    # projection + gate + stop + the next prenet (dropout off)
    p.mel.poison()
    p.gate.poison()
    s["prenet"].poison()
    p.launch_project()
    out_ref = np.concatenate([h_dec[1], ctx_gpu], 1) @ r.out_w + r.out_b
    assert rel_l2(p.mel.to_host()[:, :, 0], out_ref[:, :-1]) <= TOL32
    assert rel_l2(p.gate.to_host()[:, 0], out_ref[:, -1]) <= TOL32
    x = out_ref[:, :-1]
    for w in r.prenet:
        x = np.maximum(x @ w, 0)
    assert rel_l2(s["prenet"].to_host().reshape(B, P), x) <= TOL32
    ints = p.ints.to_host()
    assert ints[0] == 1  # step advanced once
    assert ints[2] == 0 and np.all(ints[8 + 5 * B: 8 + 6 * B] == 0)  # tickets reset for the next step
    stop_ref = sigmoid(out_ref[:, -1]) > NEVER
    np.testing.assert_array_equal(ints[8: 8 + B] == 1, stop_ref)


# ------------------------------------------------------------------------------------- whole decoder


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("B", [1, 2, 3, 8, 17, 32])
def test_teacher_forced_reduced(ctx, precision, B):
    dec, ref, ref16, _ = model(ctx, RED, precision)
    rng = np.random.default_rng(B)
    mem, lengths, teacher = inputs(RED, B, rng, 29, 25)
    out = dec.decode(mem, lengths, teacher_frames=teacher, dropout=False, gate_threshold=NEVER)
    r = ref16 if precision == "fp16" else ref
    m = mem.astype(np.float16).astype(np.float32) if precision == "fp16" else mem
    e = compare(out, r.decode(m, lengths, teacher_frames=teacher, prenet_dropout=False, gate_threshold=NEVER))
    assert max(e.values()) <= TOL32, e
    if precision == "fp16":
        e0 = compare(out, ref.decode(mem, lengths, teacher_frames=teacher, prenet_dropout=False,
                                     gate_threshold=NEVER))
        assert max(e0.values()) <= TOL16_UNROUNDED, e0


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("B", [1, 3, 32])
def test_teacher_forced_full(ctx, precision, B):
    dec, ref, ref16, _ = model(ctx, FULL, precision)
    rng = np.random.default_rng(50 + B)
    mem, lengths, teacher = inputs(FULL, B, rng, 60, 12)
    out = dec.decode(mem, lengths, teacher_frames=teacher, dropout=False, gate_threshold=NEVER)
    r = ref16 if precision == "fp16" else ref
    m = mem.astype(np.float16).astype(np.float32) if precision == "fp16" else mem
    e = compare(out, r.decode(m, lengths, teacher_frames=teacher, prenet_dropout=False, gate_threshold=NEVER))
    assert max(e.values()) <= TOL32, e


@pytest.mark.parametrize("mode,unroll", [("while", 1), ("while", 3), ("chunk", 1)])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_free_running_with_stops(ctx, precision, mode, unroll):
    """Free-running, dropout off, NVIDIA's threshold: the stop steps and lengths must match exactly
    and the frames closely (errors may compound over the ~30 steps: bound 1e-3)."""
    dec, ref, ref16, _ = model(ctx, RED, precision)
    rng = np.random.default_rng(7)
    mem, lengths, _ = inputs(RED, 8, rng, 31)
    r = ref16 if precision == "fp16" else ref
    m = mem.astype(np.float16).astype(np.float32) if precision == "fp16" else mem
    full = r.decode(m, lengths, max_steps=32, prenet_dropout=False, gate_threshold=NEVER)
    # a threshold between the items' gate trajectories so they stop at different steps
    peak = sigmoid(full.gate).max(axis=1)
    thr = float(np.median(peak)) - 1e-3
    out = dec.decode(mem, lengths, max_steps=32, dropout=False, gate_threshold=thr, mode=mode, unroll=unroll,
                     chunk=5)
    rr = r.decode(m, lengths, max_steps=32, prenet_dropout=False, gate_threshold=thr)
    e = compare(out, rr)
    assert max(e.values()) <= 1e-3, e
    assert len(set(out.n_frames.tolist())) > 1  # the items did stop at different steps


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_batch_item_equals_alone(ctx, precision):
    """Dropout on, same seed and item key: an item's frames in a batch are its frames alone. Our
    kernels sum per item in the same order whatever the batch, except the FP16 engine's LSTMs, which
    run on tensor cores beyond batch 4 (their inputs split into two halves: ~22 bits, not 24); and
    cuBLAS's processed-memory product may pick another algorithm for another row count. Hence a
    tolerance instead of bit equality."""
    dec, _, _, _ = model(ctx, RED, precision)
    rng = np.random.default_rng(11)
    mem, lengths, _ = inputs(RED, 17, rng, 27)
    caps = rng.integers(5, 30, 17)
    keys = rng.integers(0, 1000, 17)
    out = dec.decode(mem, lengths, max_steps=30, caps=caps, seed=1234, item_keys=keys, gate_threshold=0.9)
    for b in (0, 5, 16):
        one = dec.decode(mem[b:b + 1, :lengths[b]], lengths[b:b + 1], max_steps=30, caps=caps[b:b + 1],
                         seed=1234, item_keys=keys[b:b + 1], gate_threshold=0.9)
        n = one.n_frames[0]
        assert out.n_frames[b] == n and out.lengths[b] == one.lengths[0]
        assert rel_l2(out.mel[b, :, :n], one.mel[0, :, :n]) <= 1e-5
        assert rel_l2(out.gate[b, :n], one.gate[0, :n]) <= 1e-5
        assert rel_l2(out.alignment[b, :n, :lengths[b]], one.alignment[0, :n]) <= 1e-5
        assert np.all(out.mel[b, :, n:] == 0) and np.all(out.gate[b, n:] == 1e3)


@pytest.mark.parametrize("cfg", [RED, FULL], ids=["reduced", "full"])
@pytest.mark.parametrize("B", [5, 32])
def test_tensor_core_lstm_matches_the_scalar_kernels(ctx, cfg, B):
    """FP16 engine beyond batch 4: dec_lstm_*_tc (mma.sync, x as hi + lo halves) against lstm_cell
    on the same weights, teacher-forced (errors cannot compound), 12 steps with dropout: the tensor
    cores change the summation order and keep ~22 bits of x, so the results agree to ~1e-6."""
    _, _, _, w = model(ctx, cfg, "fp16")
    tc = GpuDecoder(ctx, cfg, w, precision="fp16", tensor_core_lstm=True)
    scalar = GpuDecoder(ctx, cfg, w, precision="fp16", tensor_core_lstm=False)
    assert tc.tensor_core_lstm and not scalar.tensor_core_lstm  # sm_80+ and sizes that fit
    assert tc.plan(B, 30, 12, 12, True, NEVER, "while", 1, 16)._lstm_kernel_grid("dec_lstm_att", 8)[0] \
        is tc.k["dec_lstm_att_tc"]
    rng = np.random.default_rng(40 + B)
    mem, lengths, teacher = inputs(cfg, B, rng, 30, n_teacher=12)
    kw = dict(teacher_frames=teacher, seed=5, gate_threshold=NEVER)
    a, b = tc.decode(mem, lengths, **kw), scalar.decode(mem, lengths, **kw)
    assert a.steps == b.steps == 12
    assert rel_l2(a.mel, b.mel) <= 1e-5
    assert rel_l2(a.gate, b.gate) <= 1e-5
    assert rel_l2(a.alignment, b.alignment) <= 1e-5


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_pdl_matches_plain_launches(ctx, precision):
    """Programmatic dependent launch changes only when kernels start: the outputs must be bit-equal
    to plain launches (full sizes, free-running with dropout, WHILE x2 and chunks)."""
    _, _, _, w = model(ctx, FULL, precision)
    dec = GpuDecoder(ctx, FULL, w, precision=precision, pdl=True)
    plain = GpuDecoder(ctx, FULL, w, precision=precision, pdl=False)
    rng = np.random.default_rng(21)
    mem, lengths, _ = inputs(FULL, 5, rng, 70)
    for mode, unroll in (("while", 2), ("chunk", 1)):
        kw = dict(max_steps=24, seed=99, gate_threshold=0.9, mode=mode, unroll=unroll, chunk=5)
        a, b = dec.decode(mem, lengths, **kw), plain.decode(mem, lengths, **kw)
        assert a.steps == b.steps
        np.testing.assert_array_equal(a.mel, b.mel)
        np.testing.assert_array_equal(a.gate, b.gate)
        np.testing.assert_array_equal(a.alignment, b.alignment)
        np.testing.assert_array_equal(a.n_frames, b.n_frames)


def philox4x32_10(ctr: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """NumPy Philox4x32-10 over counters (N, 4) uint32 -> (N, 4) uint32."""
    c = ctr.astype(np.uint64)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    M0, M1, mask = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = M0 * c[:, 0], M1 * c[:, 2]
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & mask, p1 >> np.uint64(32), p1 & mask
        c = np.stack([hi1 ^ c[:, 1] ^ k0, lo1, hi0 ^ c[:, 3] ^ k1, lo0], axis=1)
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
    return c.astype(np.uint32)


def dropout_keep(seed: int, step: int, key: int, layer: int, n: int) -> np.ndarray:
    j = np.arange(n)
    ctr = np.stack([j >> 2, np.full(n, key), np.full(n, step), np.full(n, layer)], 1).astype(np.uint32)
    r = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    return (r[j, j & 3] >> 31) == 0


def test_philox_known_answer():
    # Random123's published known-answer vector for philox4x32_10 (counter 0, key 0)
    r = philox4x32_10(np.zeros((1, 4), np.uint32), (0, 0))[0]
    assert [hex(x) for x in r] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_dropout_teacher_forced(ctx, precision):
    """Dropout on: the GPU's masks are Philox(seed; j/4, key, step, layer); the NumPy decode loop
    below applies the same masks, so the two must agree like the dropout-free runs."""
    dec, ref, ref16, _ = model(ctx, RED, precision)
    r = ref16 if precision == "fp16" else ref
    rng = np.random.default_rng(3)
    B, T = 3, 14
    mem, lengths, teacher = inputs(RED, B, rng, 19, T)
    seed, keys = 0x1234_5678_9ABC, np.array([4, 9, 2])
    out = dec.decode(mem, lengths, teacher_frames=teacher, dropout=True, seed=seed, item_keys=keys,
                     gate_threshold=NEVER)
    m = mem.astype(np.float16).astype(np.float32) if precision == "fp16" else mem
    state = r._initial_state(B, m.shape[1], m.shape[2])
    pm = m @ r.memory_w
    masked = np.arange(m.shape[1])[None] >= lengths[:, None]
    mel = np.zeros((B, RED.n_mel_channels, T), np.float32)
    P = RED.prenet_dim
    for t in range(T):
        frame = np.zeros((B, RED.n_mel_channels), np.float32) if t == 0 else teacher[:, :, t - 1]
        keep = [np.stack([dropout_keep(seed, t, int(k), layer, P) for k in keys]) for layer in (0, 1)]
        o, _, state = r._step(frame, state, m, pm, masked, keep)
        mel[:, :, t] = o[:, :-1]
    assert rel_l2(out.mel, mel) <= TOL32
    off = dec.decode(mem, lengths, teacher_frames=teacher, dropout=False, gate_threshold=NEVER)
    assert rel_l2(off.mel, mel) > 1e-2  # the masks did something


def test_weights_packing_roundtrip():
    rng = np.random.default_rng(0)
    w = random_weights(RED, rng)
    pk = pack_decoder_weights(RED, w)
    H = RED.attention_rnn_dim
    W = np.concatenate([w["decoder.attention_rnn.weight_ih"], w["decoder.attention_rnn.weight_hh"]], 1)
    np.testing.assert_array_equal(pk["att_w"][5, 2], W[2 * H + 5])
