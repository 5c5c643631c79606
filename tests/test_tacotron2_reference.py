"""The NumPy Tacotron2 against NVIDIA's own output (golden.npz), and its batch / stop / dropout /
teacher-forcing behaviour on fresh random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tts_desktop.model.config import Tacotron2Config
from tts_desktop.model.tacotron2 import Tacotron2, sigmoid

GOLDEN_TOL = 1e-4  # relative L2 error against NVIDIA's PyTorch float32 output
BATCH_TOL = 1e-5  # batch vs alone: the same sums, blocked differently by BLAS

# reduced dimensions for the random-weight tests: every code path, milliseconds per run
SMALL = Tacotron2Config(
    symbols_embedding_dim=32,
    encoder_embedding_dim=32,
    attention_rnn_dim=48,
    attention_dim=16,
    attention_location_n_filters=4,
    attention_location_kernel_size=7,
    decoder_rnn_dim=48,
    prenet_dim=16,
    postnet_embedding_dim=24,
    max_decoder_steps=30,
)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_weights(cfg: Tacotron2Config, rng: np.random.Generator, scale: float = 1.0) -> dict:
    """A state dict with NVIDIA's key names and shapes, filled with scaled Gaussian noise."""
    emb, enc, hid = cfg.symbols_embedding_dim, cfg.encoder_embedding_dim, cfg.encoder_embedding_dim // 2
    att, dec, pre, n_mel = cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.prenet_dim, cfg.n_mel_channels
    shapes: dict[str, tuple] = {"embedding.weight": (cfg.n_symbols, emb)}

    def conv_bn(prefix, c_out, c_in, k):
        shapes[f"{prefix}.0.conv.weight"] = (c_out, c_in, k)
        for name in ("0.conv.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
            shapes[f"{prefix}.{name}"] = (c_out,)

    def lstm(prefix, n_in, n_h, suffix=""):
        shapes[f"{prefix}weight_ih{suffix}"] = (4 * n_h, n_in)
        shapes[f"{prefix}weight_hh{suffix}"] = (4 * n_h, n_h)
        shapes[f"{prefix}bias_ih{suffix}"] = shapes[f"{prefix}bias_hh{suffix}"] = (4 * n_h,)

    for i in range(cfg.encoder_n_convolutions):
        conv_bn(f"encoder.convolutions.{i}", enc, emb if i == 0 else enc, cfg.encoder_kernel_size)
    lstm("encoder.lstm.", enc, hid, "_l0")
    lstm("encoder.lstm.", enc, hid, "_l0_reverse")
    shapes["decoder.prenet.layers.0.linear_layer.weight"] = (pre, n_mel)
    shapes["decoder.prenet.layers.1.linear_layer.weight"] = (pre, pre)
    lstm("decoder.attention_rnn.", pre + enc, att)
    a = "decoder.attention_layer."
    shapes[f"{a}query_layer.linear_layer.weight"] = (cfg.attention_dim, att)
    shapes[f"{a}memory_layer.linear_layer.weight"] = (cfg.attention_dim, enc)
    shapes[f"{a}v.linear_layer.weight"] = (1, cfg.attention_dim)
    shapes[f"{a}location_layer.location_conv.conv.weight"] = (
        cfg.attention_location_n_filters, 2, cfg.attention_location_kernel_size)  # fmt: skip
    shapes[f"{a}location_layer.location_dense.linear_layer.weight"] = (
        cfg.attention_dim, cfg.attention_location_n_filters)  # fmt: skip
    lstm("decoder.decoder_rnn.", att + enc, dec)
    shapes["decoder.linear_projection.linear_layer.weight"] = (n_mel, dec + enc)
    shapes["decoder.linear_projection.linear_layer.bias"] = (n_mel,)
    shapes["decoder.gate_layer.linear_layer.weight"] = (1, dec + enc)
    shapes["decoder.gate_layer.linear_layer.bias"] = (1,)
    n_post = cfg.postnet_n_convolutions
    for i in range(n_post):
        c_in = n_mel if i == 0 else cfg.postnet_embedding_dim
        c_out = n_mel if i == n_post - 1 else cfg.postnet_embedding_dim
        conv_bn(f"postnet.convolutions.{i}", c_out, c_in, cfg.postnet_kernel_size)

    weights = {}
    for key, shape in shapes.items():
        if key.endswith("running_var"):
            weights[key] = rng.uniform(0.5, 2.0, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            weights[key] = rng.standard_normal(shape) * scale / np.sqrt(fan_in)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def random_ids(rng, lengths):
    """A zero-padded (B, T_max) batch of random symbol ids with the given true lengths."""
    ids = np.zeros((len(lengths), max(lengths)), np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, SMALL.n_symbols, n)
    return ids


# ----------------------------------------------------------------------------------------------
# NVIDIA's own output


@pytest.fixture(scope="module")
def golden_model(golden_dir):
    from tts_desktop.model.importer import load_tacotron2

    config, weights, _ = load_tacotron2(golden_dir / "tacotron2_dle.pt")
    return Tacotron2(config, weights)


def test_golden_agreement(golden_model, golden, golden_dir):
    cases = json.loads((golden_dir / "text_cases.json").read_text())
    ids = np.asarray(golden["ids"])
    assert ids.tolist() == cases[0][1]
    steps = int(golden["steps"])

    out = golden_model.infer(
        ids[None], np.array([ids.size]), max_steps=steps, early_stop=False, prenet_dropout=False
    )
    errors = {
        "encoder_out": rel_err(out.memory, golden["encoder_out"]),
        "mel": rel_err(out.mel, golden["mel"]),
        "gate": rel_err(out.gate, golden["gate"]),
        # NVIDIA returns a lone item's alignment as (T_in, T_out)
        "alignment": rel_err(out.alignment[0].T, golden["alignment"]),
        "mel_postnet": rel_err(out.mel_postnet, golden["mel_postnet"]),
    }
    print("relative L2 errors vs golden:", errors)
    assert all(e <= GOLDEN_TOL for e in errors.values()), errors
    assert out.mel.shape == (1, SMALL.n_mel_channels, steps) and out.n_frames.tolist() == [steps]


def test_golden_teacher_forcing(golden_model, golden):
    """Fed NVIDIA's own output frames, the decoder must retrace NVIDIA's whole run: with the prenet
    dropout off, free-running NVIDIA fed exactly these frames (step t got mel[t-1], step 0 the go
    frame), so every step's gate, alignment and frame are checkable, not just the first."""
    ids = np.asarray(golden["ids"])[None]
    lengths = np.array([ids.shape[1]])
    memory = golden_model.encode(ids, lengths)
    out = golden_model.decode(
        memory, lengths, early_stop=False, prenet_dropout=False, teacher_frames=golden["mel"]
    )
    assert out.mel.shape == golden["mel"].shape  # T teacher frames -> T steps by default
    assert rel_err(out.gate, golden["gate"]) <= GOLDEN_TOL
    assert rel_err(out.alignment[0].T, golden["alignment"]) <= GOLDEN_TOL
    assert rel_err(out.mel, golden["mel"]) <= GOLDEN_TOL


# ----------------------------------------------------------------------------------------------
# random weights


@pytest.fixture(scope="module")
def model():
    return Tacotron2(SMALL, random_weights(SMALL, np.random.default_rng(2), scale=2.0))


def _gate_model(bias: float) -> Tacotron2:
    weights = random_weights(SMALL, np.random.default_rng(5))
    weights["decoder.gate_layer.linear_layer.bias"][:] = bias
    return Tacotron2(SMALL, weights)


def test_single_item_early_stop_is_a_prefix_of_the_full_run(model):
    """B = 1: early stopping only cuts the run (stop frame kept); it changes no value."""
    rng = np.random.default_rng(16)
    ids = random_ids(rng, [13])
    full = model.infer(ids, [13], max_steps=20, early_stop=False, prenet_dropout=False)
    p = sigmoid(full.gate[0])
    # a threshold first crossed after step 7 (a lone item's runs are bit-identical, so exact is fine)
    threshold = float(p[:8].max())
    assert (p > threshold).any(), "random weights gave a gate that never rises after step 7"
    stop = int(np.argmax(p > threshold))
    cut = model.infer(ids, [13], max_steps=20, gate_threshold=threshold, prenet_dropout=False)
    assert cut.lengths.tolist() == [stop] and cut.n_frames.tolist() == [stop + 1]
    assert not cut.reached_max[0]
    n = stop + 1
    assert cut.mel.shape == (1, SMALL.n_mel_channels, n)
    np.testing.assert_allclose(cut.mel, full.mel[:, :, :n], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cut.gate, full.gate[:, :n], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cut.alignment, full.alignment[:, :n], rtol=0, atol=1e-6)
    # the postnet reaches 10 frames ahead, so the cut run's differs from the full run's near the
    # end: it is the postnet of the cut mel alone
    assert cut.mel_postnet.shape == (1, SMALL.n_mel_channels, n)
    np.testing.assert_allclose(cut.mel_postnet, model.postnet(full.mel[..., :n]), rtol=0, atol=1e-5)
    assert np.abs(cut.mel_postnet - full.mel_postnet[..., :n]).max() > 1e-3


def test_early_stop_at_first_step():
    model = _gate_model(+50.0)
    rng = np.random.default_rng(12)
    ids = random_ids(rng, [7, 10])
    out = model.infer(ids, [7, 10], max_steps=25)
    assert out.mel.shape == (2, SMALL.n_mel_channels, 1)  # NVIDIA: one frame, mel_lengths 0
    assert out.lengths.tolist() == [0, 0] and out.n_frames.tolist() == [1, 1]
    assert not out.reached_max.any()


def test_never_stopping_reaches_max_steps():
    model = _gate_model(-50.0)
    rng = np.random.default_rng(13)
    ids = random_ids(rng, [7, 10])
    out = model.infer(ids, [7, 10], max_steps=9)
    assert out.mel.shape == (2, SMALL.n_mel_channels, 9)
    assert out.lengths.tolist() == [9, 9] and out.n_frames.tolist() == [9, 9]
    assert out.reached_max.all()
    assert np.all(out.gate < 0) and np.all(out.mel_postnet != 0)


def _threshold_with_distinct_stops(trajectories, max_steps):
    """A gate threshold under which the items stop at pairwise different steps (or never), each
    crossing clear of float rounding; None if these trajectories admit none."""
    values = np.unique(np.concatenate(trajectories))
    best, best_n = None, 0
    for lo, hi in zip(values[:-1], values[1:]):
        if hi - lo < 1e-4:
            continue
        thr = float(lo + hi) / 2
        stops = [int(np.argmax(p > thr)) if (p > thr).any() else max_steps for p in trajectories]
        if len(set(stops)) == len(trajectories) and len(set(stops) - {max_steps}) > best_n:
            best, best_n = thr, len(set(stops) - {max_steps})
    return best


def test_batch_equals_each_item_alone(model):
    lengths = [9, 17, 4]
    max_steps = 24
    rng = np.random.default_rng(14)
    ids = random_ids(rng, lengths)
    alone_full = [
        model.infer(ids[b : b + 1, :n], [n], max_steps=max_steps, early_stop=False, prenet_dropout=False)
        for b, n in enumerate(lengths)
    ]
    threshold = _threshold_with_distinct_stops([sigmoid(o.gate[0]) for o in alone_full], max_steps)
    assert threshold is not None, "random weights gave no threshold separating the items' stops"

    kwargs = dict(max_steps=max_steps, gate_threshold=threshold, prenet_dropout=False)
    batch = model.infer(ids, lengths, **kwargs)
    alone = [model.infer(ids[b : b + 1, :n], [n], **kwargs) for b, n in enumerate(lengths)]
    assert len(set(batch.n_frames.tolist())) == 3  # the items really stop at different steps
    assert batch.mel.shape[2] == max(o.mel.shape[2] for o in alone)

    for b, (n, one) in enumerate(zip(lengths, alone)):
        f = one.mel.shape[2]
        assert batch.lengths[b] == one.lengths[0] and batch.reached_max[b] == one.reached_max[0]
        assert batch.n_frames[b] == f
        errors = [
            rel_err(batch.memory[b, :n], one.memory[0]),
            rel_err(batch.mel[b, :, :f], one.mel[0]),
            rel_err(batch.mel_postnet[b, :, :f], one.mel_postnet[0]),
            rel_err(batch.gate[b, :f], one.gate[0]),
            rel_err(batch.alignment[b, :f, :n], one.alignment[0]),
        ]
        assert max(errors) <= BATCH_TOL, errors
        # padding: memory, attention and frames after the stop are filled, not left as garbage
        assert not batch.memory[b, n:].any() and not batch.alignment[b, :, n:].any()
        assert not batch.mel[b, :, f:].any() and not batch.mel_postnet[b, :, f:].any()
        assert np.all(batch.gate[b, f:] == 1e3)


def test_prenet_dropout_is_seeded(model):
    rng = np.random.default_rng(15)
    ids = random_ids(rng, [11])
    run = lambda seed: model.infer(ids, [11], max_steps=12, early_stop=False, rng=np.random.default_rng(seed))
    a, b, c = run(1), run(1), run(2)
    off = model.infer(ids, [11], max_steps=12, early_stop=False, prenet_dropout=False)
    np.testing.assert_array_equal(a.mel, b.mel)
    np.testing.assert_array_equal(a.alignment, b.alignment)
    # step 0 feeds the all-zero go frame, which dropout cannot change; every later step differs
    np.testing.assert_array_equal(a.mel[..., 0], c.mel[..., 0])
    assert np.all(np.abs(a.mel[..., 1:] - c.mel[..., 1:]).max(axis=1) > 1e-4)
    assert np.all(np.abs(a.mel[..., 1:] - off.mel[..., 1:]).max(axis=1) > 1e-4)


def test_teacher_forcing(model):
    rng = np.random.default_rng(16)
    ids = random_ids(rng, [8, 12])
    memory = model.encode(ids, [8, 12])
    free = model.decode(memory, [8, 12], max_steps=10, early_stop=False, prenet_dropout=False)
    # the model's own frames as the teacher: the same run
    own = model.decode(memory, [8, 12], early_stop=False, prenet_dropout=False, teacher_frames=free.mel)
    np.testing.assert_allclose(own.mel, free.mel, atol=1e-6)
    np.testing.assert_allclose(own.alignment, free.alignment, atol=1e-6)
    # other frames: step 0 (go frame) agrees, step 1 onward follows the teacher
    teacher = rng.standard_normal(free.mel.shape).astype(np.float32)
    forced = model.decode(memory, [8, 12], early_stop=False, prenet_dropout=False, teacher_frames=teacher)
    np.testing.assert_allclose(forced.mel[..., 0], free.mel[..., 0], atol=1e-6)
    np.testing.assert_allclose(forced.gate[:, 0], free.gate[:, 0], atol=1e-6)
    assert np.all(np.abs(forced.mel[..., 1:] - free.mel[..., 1:]).max(axis=1) > 1e-4)
    # T teacher frames drive at most T + 1 steps
    assert model.decode(memory, [8, 12], max_steps=11, early_stop=False, teacher_frames=teacher).mel.shape[2] == 11
    with pytest.raises(ValueError):
        model.decode(memory, [8, 12], max_steps=12, teacher_frames=teacher)
