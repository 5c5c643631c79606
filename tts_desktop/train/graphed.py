"""A Tacotron2 training step whose decoder, postnet, loss and backward replay from a CUDA graph.

Why: the teacher-forced decoder is a Python loop over every mel frame (~550 per batch), and
each frame issues about a hundred small kernels forward and backward. Eagerly, the GPU waits on
Python and the dispatcher: on an H100 a batch of 128 took 1.35 s, ~95 utterances/s, far too
slow to train in the pieces a lease allows. Captured once per padded length, the whole
decoder + postnet + loss + backward is one graph launch.

What stays eager, and why:
- the encoder: its LSTM packs each batch by the items' own lengths (so the backward direction
  starts at each item's last symbol), and a packed batch's layout varies from batch to batch;
  it is cheap. Its gradient is completed by `memory.backward(grad of memory)` after the replay;
- gradient clipping and Adam (a handful of foreach kernels), so the optimizer state stays the
  ordinary torch.optim one that checkpoints save and resume.

Fixed shapes: batch size, the text length (`t_in`, the corpus's longest; padded symbols are
masked out of the attention, so they change nothing), and the mel length rounded up to a
multiple of `frame_step` (one graph per length seen). Frames past an item's length are masked
to the targets' padding values, so they add zero to the sums in the loss; multiplying the
loss by (padded length / batch's longest length) restores exactly the per-element means NVIDIA's
loss takes over the batch's own padding; the decoder's output past the batch's longest item is
zeroed before the postnet, as the convolutions' own padding would be. BatchNorm in the postnet
does see the extra frames in its batch statistics, the one difference from an eager step.

All graphs share one memory pool: a replay's temporaries are dead when it ends, so the
lengths' graphs may reuse each other's memory, and only one runs at a time. Each capture is
preceded by two eager warm-up steps of its length (`warmup_each=True`), which run outside that pool
while it holds the earlier graphs' memory: at batch 128 the pool (35.7 GiB) plus one warm-up made
74 GiB and ran out of memory on an H100. `warmup_each=False` warms up before the first capture
only: batch 128 then held 53 GiB beside WaveGlow (session 5), and train.py makes it the default
(TrainConfig.graph_warmup "first"); tests/gpu/test_train_graphed_gpu.py checks both.

No loss scaling: under graphs the step runs in FP32 with TF32 matrix products (GradScaler's
skip-on-overflow needs the host), which on these small matrices costs next to nothing.
`use_graphs=False` runs the same code without capture: the CPU tests check that path against
an ordinary training step, gradient for gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tts_desktop.train.losses import tacotron2_loss


def capture_step(run, zero_grad, pool=None, warmup: bool = True):
    """Record `run` (a forward + backward) into a new CUDA graph: first two warm-up runs on a side
    stream (cuBLAS and cuDNN set themselves up on first use, which capture forbids), their
    gradients zeroed, then the recorded run. Returns (graph, what the recorded run returned).
    `warmup=False` records at once: for a later capture of the same step at another shape, once
    the libraries are set up (and cuDNN's autotuner is off, as for the Tacotron2)."""
    if warmup:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(side)
        # the warm-up's blocks sit in the ordinary allocator's cache, out of the graph pool's reach
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    zero_grad()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = run()
    return graph, out


@dataclass
class _Static:
    """One padded mel length's fixed input tensors, its graph and its loss outputs."""
    mel: torch.Tensor  # (B, n_mel, T) targets, zero-padded
    gate: torch.Tensor  # (B, T) stop targets, one-padded
    mel_lengths: torch.Tensor  # (B,)
    scale: torch.Tensor  # () padded length / batch's longest
    frames_mask: torch.Tensor  # (1, 1, T): 1 on the batch's own frames
    graph: torch.cuda.CUDAGraph | None = None
    losses: dict | None = None


class GraphedTacotron2Step:
    def __init__(self, model, batch_size: int, t_in: int, frame_step: int = 64, use_graphs: bool = True,
                 warmup_each: bool = True):
        self.model = model
        self.batch_size, self.t_in, self.frame_step = batch_size, t_in, frame_step
        self.use_graphs, self.warmup_each = use_graphs, warmup_each
        params = list(model.named_parameters())
        # parameters the graph computes gradients for, and those the eager encoder does
        self.graph_params = [p for n, p in params if n.startswith(("decoder.", "postnet."))]
        self.eager_params = [p for n, p in params if not n.startswith(("decoder.", "postnet."))]
        device = next(model.parameters()).device
        self.device = device
        E = model.config.encoder_embedding_dim
        self.memory = torch.zeros(batch_size, t_in, E, device=device, requires_grad=True)
        self.text_lengths = torch.ones(batch_size, dtype=torch.long, device=device)
        # gradients accumulate into these same tensors on every replay: never set them to None
        for p in self.graph_params + self.eager_params + [self.memory]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.statics: dict[int, _Static] = {}
        self.pool = None

    # -----------------------------------------------------------------------------------------

    def padded_length(self, frames: int) -> int:
        return int(math.ceil(frames / self.frame_step) * self.frame_step)

    def zero_grad(self) -> None:
        grads = [p.grad for p in self.graph_params + self.eager_params] + [self.memory.grad]
        torch._foreach_zero_(grads)

    def _decoder_loss_backward(self, st: _Static) -> dict[str, torch.Tensor]:
        """Decoder + postnet + loss + backward on the static inputs: what the graph records."""
        outputs = self.model.decode(self.memory, self.text_lengths, st.mel, st.mel_lengths, st.frames_mask)
        losses = {k: v * st.scale for k, v in tacotron2_loss(outputs, st.mel, st.gate).items()}
        losses["loss"].backward()
        return losses

    def _static(self, frames: int) -> _Static:
        if frames not in self.statics:
            B, n_mel = self.batch_size, self.model.config.n_mel_channels
            self.statics[frames] = _Static(
                mel=torch.zeros(B, n_mel, frames, device=self.device),
                gate=torch.ones(B, frames, device=self.device),
                mel_lengths=torch.full((B,), frames, dtype=torch.long, device=self.device),
                scale=torch.ones((), device=self.device),
                frames_mask=torch.ones(1, 1, frames, device=self.device))
        return self.statics[frames]

    def _capture(self, st: _Static) -> None:
        warmup = self.warmup_each or self.pool is None  # the first capture always warms up
        st.graph, losses = capture_step(lambda: self._decoder_loss_backward(st), self.zero_grad, self.pool, warmup)
        st.losses = {k: v.detach() for k, v in losses.items()}
        if self.pool is None:
            self.pool = st.graph.pool()

    # -----------------------------------------------------------------------------------------

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Forward and backward for one batch (from TacotronData.batch, on the device): leaves the
        gradients in every parameter's .grad (zeroed first) and returns the losses."""
        text, text_lengths = batch["text"], batch["text_lengths"]
        mel, gate, mel_lengths = batch["mel"], batch["gate"], batch["mel_lengths"]
        if text.shape[0] != self.batch_size or text.shape[1] > self.t_in:
            raise ValueError(f"batch of {tuple(text.shape)} symbols does not fit ({self.batch_size}, {self.t_in})")
        frames = mel.shape[2]
        st = self._static(self.padded_length(frames))
        self.zero_grad()
        memory = self.model.encode(text, text_lengths)
        with torch.no_grad():
            self.memory.copy_(F.pad(memory.detach(), (0, 0, 0, self.t_in - memory.shape[1])))
            self.text_lengths.copy_(text_lengths)
            st.mel.zero_()
            st.mel[:, :, :frames].copy_(mel)
            st.gate.fill_(1.0)
            st.gate[:, :frames].copy_(gate)
            st.mel_lengths.copy_(mel_lengths)
            st.scale.fill_(st.mel.shape[2] / frames)
            st.frames_mask.fill_(0.0)
            st.frames_mask[..., :frames] = 1.0
        if not self.use_graphs:
            losses = {k: v.detach() for k, v in self._decoder_loss_backward(st).items()}
        else:
            if st.graph is None:
                self._capture(st)
            st.graph.replay()
            losses = {k: v.clone() for k, v in st.losses.items()}
        # the encoder's share: the graph left d(loss)/d(memory) in self.memory.grad
        memory.backward(self.memory.grad[:, :memory.shape[1]])
        return losses


def _bench(batch_size: int, t_in: int = 160, frames: int = 576, steps: int = 4) -> None:
    """Seconds per step at NVIDIA's full dimensions on random data: graphed vs eager split step."""
    import time

    from tts_desktop.model.config import Tacotron2Config
    from tts_desktop.train.models import Tacotron2

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = Tacotron2(Tacotron2Config()).cuda().train()
    batch = {"text": torch.randint(1, 148, (batch_size, t_in), device="cuda"),
             "text_lengths": torch.full((batch_size,), t_in, device="cuda"),
             "mel": torch.randn(batch_size, 80, frames, device="cuda"),
             "gate": torch.zeros(batch_size, frames, device="cuda"),
             "mel_lengths": torch.full((batch_size,), frames, device="cuda")}
    for use_graphs in (True, False):
        step = GraphedTacotron2Step(model, batch_size, t_in, use_graphs=use_graphs)
        t0 = time.perf_counter()
        step.step(batch)  # capture (graphs) or warm-up
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps if use_graphs else 2):
            step.step(batch)
        torch.cuda.synchronize()
        per = (time.perf_counter() - t0) / (steps if use_graphs else 2)
        print(f"batch {batch_size} graphs={use_graphs}: first {first:.2f} s, then {per:.3f} s/step "
              f"({batch_size / per:.0f} utterances/s), peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB",
              flush=True)


if __name__ == "__main__":
    import sys

    for b in [int(a) for a in sys.argv[1:]] or [64, 128]:
        _bench(b)
