"""The two training objectives, as NVIDIA defines them.

Tacotron2: mean squared error of the mel before and after the postnet against the target (both
terms, equal weight), plus binary cross-entropy of the stop-token logits against the "stopped"
target (0 before an utterance's last frame, 1 from it on). With mask_padding the model has
already overwritten padded outputs with the targets' padding values, so padding adds nothing.

WaveGlow: the negative log-likelihood of the audio under the flow, with a Gaussian prior of
standard deviation sigma (1.0 in training) on z, per audio sample:
    ( sum z^2 / (2 sigma^2) - sum log s - sum log|det W| ) / (batch * n_group * steps)
(the constant log(2 pi sigma^2)/2 per sample is left out, as NVIDIA does).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def tacotron2_loss(outputs, mel_target: torch.Tensor, gate_target: torch.Tensor) -> dict[str, torch.Tensor]:
    """outputs = (mel, mel_postnet, gate, alignments) of models.Tacotron2.forward.

    Returns {'loss', 'mel', 'gate'}: the total to minimise and its two parts, float32."""
    mel, mel_postnet, gate, _ = outputs
    mel_loss = F.mse_loss(mel.float(), mel_target) + F.mse_loss(mel_postnet.float(), mel_target)
    gate_loss = F.binary_cross_entropy_with_logits(gate.float(), gate_target)
    return {"loss": mel_loss + gate_loss, "mel": mel_loss.detach(), "gate": gate_loss.detach()}


def waveglow_loss(outputs, sigma: float = 1.0) -> dict[str, torch.Tensor]:
    """outputs = (z, log_s list, log_det_W list) of models.WaveGlow.forward. Returns {'loss'}."""
    z, log_s_list, log_det_list = outputs
    z = z.float()
    log_s_total = sum(log_s.float().sum() for log_s in log_s_list)
    log_det_total = sum(log_det_list)
    nll = (z * z).sum() / (2 * sigma * sigma) - log_s_total - log_det_total
    return {"loss": nll / z.numel()}
