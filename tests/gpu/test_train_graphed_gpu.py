"""The CUDA-graph training steps on a GPU: Tacotron2's (tts_desktop/train/graphed.py) and WaveGlow's
(graphed_waveglow.py, at the end), each against the same step run without capture.

Tacotron2's (tts_desktop/train/graphed.py) on a GPU, against the same
step run without capture: replaying the captured graph must give the eager step's losses and
gradients for every batch, not only the one it was captured with (a static input not refreshed
would show on the second batch). Training mode (cuDNN's LSTM backward exists only there) with every
dropout probability set to zero, so both runs are deterministic; TF32 is off so that the only
difference left is the order cuBLAS sums in: 1e-4 relative."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("no CUDA device for torch", allow_module_level=True)

from tts_desktop.model.config import Tacotron2Config, WaveGlowConfig  # noqa: E402
from tts_desktop.text import SYMBOLS  # noqa: E402
from tts_desktop.train.graphed import GraphedTacotron2Step  # noqa: E402
from tts_desktop.train import models  # noqa: E402
from tts_desktop.train.graphed_waveglow import GraphedWaveGlowStep  # noqa: E402
from tts_desktop.train.models import Tacotron2, WaveGlow  # noqa: E402

SMALL = dict(n_symbols=len(SYMBOLS), symbols_embedding_dim=64, encoder_embedding_dim=64, attention_rnn_dim=96,
             attention_dim=32, attention_location_n_filters=8, decoder_rnn_dim=96, prenet_dim=32,
             postnet_embedding_dim=48)


def _batch(gen, B, t_in, frames):
    text_lengths = torch.randint(t_in // 2, t_in + 1, (B,), generator=gen)
    text_lengths[0] = t_in
    mel_lengths = torch.randint(frames // 2, frames + 1, (B,), generator=gen)
    mel_lengths[0] = frames
    text = torch.randint(1, len(SYMBOLS), (B, t_in), generator=gen)
    text[torch.arange(t_in)[None, :] >= text_lengths[:, None]] = 0
    mel = torch.randn(B, 80, frames, generator=gen)
    gate = torch.zeros(B, frames)
    for b in range(B):
        mel[b, :, mel_lengths[b]:] = 0
        gate[b, mel_lengths[b] - 1:] = 1
    return {k: v.cuda() for k, v in dict(text=text, text_lengths=text_lengths, mel=mel, gate=gate,
                                         mel_lengths=mel_lengths).items()}


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()]).clone()


@pytest.mark.parametrize("warmup_each", [True, False], ids=["warmup-each", "warmup-first"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_graph_replay_equals_the_uncaptured_step(batch_size, warmup_each, monkeypatch):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    monkeypatch.setattr(models, "CONV_DROPOUT", 0.0)
    monkeypatch.setattr(models, "PRENET_DROPOUT", 0.0)
    torch.manual_seed(0)
    model = Tacotron2(Tacotron2Config.from_dict(SMALL), p_attention_dropout=0.0, p_decoder_dropout=0.0).cuda()
    graphed = GraphedTacotron2Step(model, batch_size, t_in=24, frame_step=32, warmup_each=warmup_each)
    eager = GraphedTacotron2Step(model, batch_size, t_in=24, frame_step=32, use_graphs=False)
    gen = torch.Generator().manual_seed(1)
    # frames 50 and 60 share the 64-frame graph; 20 gets its own (32): the shared pool is exercised
    for frames in (50, 60, 20, 57):
        batch = _batch(gen, batch_size, 20, frames)
        for p in model.parameters():  # graph-visible gradient buffers are poisoned, then zeroed by step()
            p.grad.fill_(float("nan"))
        got = graphed.step(batch)
        got_grads = _grads(model)
        want = eager.step(batch)
        want_grads = _grads(model)
        assert torch.isfinite(got_grads).all()
        for k in ("loss", "mel", "gate"):
            assert abs(float(got[k]) - float(want[k])) <= 1e-5 * abs(float(want[k])) + 1e-7, (frames, k)
        err = float((got_grads - want_grads).norm() / want_grads.norm())
        assert err < 1e-4, (frames, err)
    assert sorted(graphed.statics) == [32, 64]


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_waveglow_graph_replay_equals_the_uncaptured_step(amp):
    """Three different batches through one captured graph: each replay gives the eager step's loss
    and gradients (FP32: 1e-4, the summation order of cuDNN / cuBLAS; bf16: both runs round the
    same way, 1e-2 for algorithm choices). Capture must succeed (capture_error stays None)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cfg = WaveGlowConfig(n_flows=4, n_early_every=2, wn_n_layers=3, wn_n_channels=32)
    model = WaveGlow(cfg).cuda()
    with torch.no_grad():
        for wn in model.WN:
            wn.end.weight.normal_(0, 0.05)
    graphed = GraphedWaveGlowStep(model, 3, 2048, amp_dtype=amp)
    eager = GraphedWaveGlowStep(model, 3, 2048, amp_dtype=amp, use_graphs=False)
    gen = torch.Generator().manual_seed(2)
    tol = 1e-4 if amp is None else 1e-2
    for _ in range(3):
        batch = {"mel": torch.randn(3, 80, 9, generator=gen).cuda(),
                 "audio": (0.1 * torch.randn(3, 2048, generator=gen)).cuda()}
        for p in model.parameters():
            p.grad.fill_(float("nan"))
        got = graphed.step(batch)
        got_grads = _grads(model)
        want = eager.step(batch)
        want_grads = _grads(model)
        assert graphed.capture_error is None and graphed.graph is not None
        assert torch.isfinite(got_grads).all()
        assert abs(float(got["loss"]) - float(want["loss"])) <= tol * abs(float(want["loss"])) + 1e-6
        err = float((got_grads - want_grads).norm() / want_grads.norm())
        assert err < tol, err
