"""A WaveGlow training step whose forward, loss and backward replay from one CUDA graph.

Why: measured on the H100 (`python -m tts_desktop.train.speed --profile 25`, 128 channels,
8 flows, batch 48, bf16): 0.203 s per step, of which the GPU was busy ~77 ms. The rest is
Python and the dispatcher issuing ~430 convolutions forward, ~220 backward and a few thousand
small elementwise, copy and reduction kernels per step, each waiting on the host. WaveGlow's shapes never change (fixed
segments, fixed batch), so the whole forward + loss + backward is recorded once and replayed.

What stays eager, and why:
- the log|det W| terms of the invertible 1x1 convolutions: they do not depend on the data, and
  `torch.logdet` factorises W with a solver that may wait on the host, which capture forbids.
  Their value and gradient (W^-T, per flow) are a few tiny kernels after the replay;
- gradient clipping and Adam, so the optimizer state stays the ordinary torch.optim one.

Autocast (bf16) runs inside the captured region with its weight cache off, as capture needs.
No loss scaling: FP16 AMP's GradScaler skips steps from the host; train.py uses bf16 here.
If capture fails (a kernel that synchronises, an old driver) the step says why in
`capture_error` and goes on without graphs, the same computation eagerly.
`use_graphs=False` runs that eager path from the start: the CPU tests check it against an
ordinary training step, gradient for gradient.
"""

from __future__ import annotations

import torch

from tts_desktop.train.graphed import capture_step
from tts_desktop.train.losses import waveglow_loss


class GraphedWaveGlowStep:
    def __init__(self, model, batch_size: int, segment_length: int, sigma: float = 1.0,
                 amp_dtype: torch.dtype | None = None, hop: int = 256, use_graphs: bool = True):
        self.model, self.sigma, self.amp_dtype = model, sigma, amp_dtype
        self.batch_size, self.segment_length = batch_size, segment_length
        self.device = next(model.parameters()).device
        self.use_graphs = use_graphs and self.device.type == "cuda"  # elsewhere: the eager path
        self.capture_error: str | None = None
        n_mel = model.config.n_mel_channels
        self.mel = torch.zeros(batch_size, n_mel, segment_length // hop + 1, device=self.device)
        self.audio = torch.zeros(batch_size, segment_length, device=self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # gradients accumulate into these same tensors on every replay: never set them to None
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.partial: torch.Tensor | None = None

    def zero_grad(self) -> None:
        torch._foreach_zero_([p.grad for p in self.params])

    def _loss_backward(self) -> torch.Tensor:
        """Forward without the log|det W| terms, that part of the loss, backward: what the graph
        records. Divided by the same element count as waveglow_loss divides the whole NLL."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None,
                            cache_enabled=False):
            z, log_s, _ = self.model(self.mel, self.audio, with_log_det=False)
        partial = waveglow_loss((z, log_s, []), self.sigma)["loss"]
        partial.backward()
        return partial.detach()

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Forward and backward for one batch (from WaveGlowData.batch, on the device): leaves the
        gradients in every parameter's .grad (zeroed first) and returns {'loss'}, the same NLL
        per element as waveglow_loss."""
        mel, audio = batch["mel"], batch["audio"]
        if tuple(audio.shape) != tuple(self.audio.shape) or tuple(mel.shape) != tuple(self.mel.shape):
            raise ValueError(f"batch of audio {tuple(audio.shape)}, mel {tuple(mel.shape)} does not fit "
                             f"the step's {tuple(self.audio.shape)}, {tuple(self.mel.shape)}")
        with torch.no_grad():
            self.mel.copy_(mel)
            self.audio.copy_(audio)
        if self.use_graphs and self.graph is None:
            try:
                self.graph, self.partial = capture_step(self._loss_backward, self.zero_grad)
            except RuntimeError as e:  # go on eagerly, saying why once (train.py logs it)
                self.use_graphs, self.capture_error = False, f"{type(e).__name__}: {e}".splitlines()[0][:300]
                torch.cuda.synchronize()
        self.zero_grad()
        if self.use_graphs:
            self.graph.replay()
            partial = self.partial.clone()
        else:
            partial = self._loss_backward()
        # the data-independent part, eagerly: -sum(log|det W|) over the same element count
        log_det = self.model.log_det_total(self.batch_size, self.segment_length) / self.audio.numel()
        (-log_det).backward()
        return {"loss": partial - log_det.detach()}
