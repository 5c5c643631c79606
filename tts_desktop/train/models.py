"""PyTorch Tacotron2 and WaveGlow for training, with NVIDIA's architecture and state-dict keys.

Written from the architecture (DeepLearningExamples' Tacotron2 / WaveGlow, as documented in
docs/ARCHITECTURE.md and tts_desktop/model/voice_files.py), not copied from it. What matters for
the rest of the app is that `state_dict()` has exactly NVIDIA's key names and shapes, so that a
checkpoint from `tts_desktop.train.train` goes through `tts_desktop.model.importer` and the NumPy
reference / GPU engine run it; tests/test_train.py checks both against `tacotron2_shapes` /
`waveglow_shapes`.

Training-only behaviour, as NVIDIA trains:
- Tacotron2: dropout 0.5 after every encoder conv and postnet conv, dropout p_attention_dropout
  and p_decoder_dropout (0.1) on the two decoder LSTM outputs, prenet dropout 0.5 that stays on
  even at inference (the model is trained to expect it), teacher forcing (step t reads the target
  frame t-1; step 0 reads a zero "go" frame), and with mask_padding the outputs past each
  utterance's end are overwritten with the targets' padding values (0 for mels, a large
  "stopped" logit for the gate) so padding never contributes to the loss.
- WaveGlow: `forward(mel, audio)` runs the flow audio -> z and returns (z, log_s per flow,
  log|det W| per flow) for the likelihood; `infer(mel, z, sigma)` runs it back. The WN convs are
  weight-normalised with NVIDIA's parameter names (`weight_g`, `weight_v`), which the importer
  folds; `folded_state_dict` folds them here for export.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tts_desktop.model.config import Tacotron2Config, WaveGlowConfig

GATE_PAD_LOGIT = 1e3  # NVIDIA's value for gate outputs past the end (sigmoid = 1: "stopped")
PRENET_DROPOUT = 0.5
CONV_DROPOUT = 0.5
UPSAMPLE_KERNEL, UPSAMPLE_STRIDE = 1024, 256  # NVIDIA's fixed WaveGlow upsampler


# ---------------------------------------------------------------------------------------------
# building blocks with NVIDIA's module names (LinearNorm.linear_layer, ConvNorm.conv)


class LinearNorm(nn.Module):
    """nn.Linear under the name `linear_layer`, Xavier-initialised for the activation it feeds."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True, gain: str = "linear"):
        super().__init__()
        self.linear_layer = nn.Linear(n_in, n_out, bias=bias)
        nn.init.xavier_uniform_(self.linear_layer.weight, gain=nn.init.calculate_gain(gain))

    def forward(self, x):
        return self.linear_layer(x)


class ConvNorm(nn.Module):
    """'Same' nn.Conv1d under the name `conv`, Xavier-initialised like LinearNorm."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, bias: bool = True, gain: str = "linear"):
        super().__init__()
        assert kernel_size % 2 == 1, "'same' padding needs an odd kernel"
        self.conv = nn.Conv1d(n_in, n_out, kernel_size, padding=(kernel_size - 1) // 2, bias=bias)
        nn.init.xavier_uniform_(self.conv.weight, gain=nn.init.calculate_gain(gain))

    def forward(self, x):
        return self.conv(x)


def conv_bn(n_in: int, n_out: int, kernel_size: int, gain: str) -> nn.Sequential:
    """Sequential(ConvNorm, BatchNorm1d): the keys `N.0.conv.*` and `N.1.*` of NVIDIA's convs.

    NVIDIA initialises BatchNorm's scale uniformly in [0, 1) rather than at 1 (train.py's
    default, `--disable-uniform-initialize-bn-weight` off); we do the same.
    """
    bn = nn.BatchNorm1d(n_out)
    nn.init.uniform_(bn.weight)
    return nn.Sequential(ConvNorm(n_in, n_out, kernel_size, gain=gain), bn)


def lengths_mask(lengths: torch.Tensor, t_max: int) -> torch.Tensor:
    """(B, T) bool, True on each item's valid steps."""
    return torch.arange(t_max, device=lengths.device)[None, :] < lengths[:, None]


# ---------------------------------------------------------------------------------------------
# Tacotron2


class Encoder(nn.Module):
    def __init__(self, c: Tacotron2Config):
        super().__init__()
        E = c.encoder_embedding_dim
        self.convolutions = nn.ModuleList(
            [conv_bn(E, E, c.encoder_kernel_size, "relu") for _ in range(c.encoder_n_convolutions)])
        self.lstm = nn.LSTM(E, E // 2, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, E, T_in) embedded symbols -> memory (B, T_in, E), zero past each length."""
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x)), CONV_DROPOUT, self.training)
        t_in = x.shape[2]
        # packing makes each direction of the LSTM see only the item's own steps
        packed = nn.utils.rnn.pack_padded_sequence(
            x.transpose(1, 2), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t_in)
        return out


class Prenet(nn.Module):
    def __init__(self, n_in: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([LinearNorm(n_in, dim, bias=False), LinearNorm(dim, dim, bias=False)])
        # NVIDIA keeps this dropout on at inference too: the bottleneck is part of the model.
        # Tests switch it off to compare with the deterministic NumPy reference.
        self.always_dropout = True

    def forward(self, x):
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), PRENET_DROPOUT, self.training or self.always_dropout)
        return x


class LocationLayer(nn.Module):
    """Previous and cumulative attention weights (B, 2, T_in) -> (B, T_in, attention_dim)."""

    def __init__(self, n_filters: int, kernel_size: int, attention_dim: int):
        super().__init__()
        self.location_conv = ConvNorm(2, n_filters, kernel_size, bias=False)
        self.location_dense = LinearNorm(n_filters, attention_dim, bias=False, gain="tanh")

    def forward(self, weights_cat):
        return self.location_dense(self.location_conv(weights_cat).transpose(1, 2))


class Attention(nn.Module):
    """Location-sensitive attention: e = v . tanh(W q + V memory + U f(previous weights))."""

    def __init__(self, c: Tacotron2Config):
        super().__init__()
        A = c.attention_dim
        self.query_layer = LinearNorm(c.attention_rnn_dim, A, bias=False, gain="tanh")
        self.memory_layer = LinearNorm(c.encoder_embedding_dim, A, bias=False, gain="tanh")
        self.v = LinearNorm(A, 1, bias=False)
        self.location_layer = LocationLayer(c.attention_location_n_filters, c.attention_location_kernel_size, A)

    def forward(self, query, memory, processed_memory, weights_cat, padding):
        energies = self.v(torch.tanh(
            self.query_layer(query)[:, None, :] + self.location_layer(weights_cat) + processed_memory))
        energies = energies.squeeze(2).float().masked_fill(padding, -math.inf)
        weights = F.softmax(energies, dim=1)
        context = torch.bmm(weights[:, None, :].to(memory.dtype), memory)[:, 0]
        return context, weights


class Decoder(nn.Module):
    def __init__(self, c: Tacotron2Config, p_attention_dropout: float, p_decoder_dropout: float):
        super().__init__()
        if c.n_frames_per_step != 1:
            raise ValueError("only n_frames_per_step = 1 is supported (NVIDIA's published models)")
        E, n_mel = c.encoder_embedding_dim, c.n_mel_channels
        self.n_mel = n_mel
        self.p_attention_dropout = p_attention_dropout
        self.p_decoder_dropout = p_decoder_dropout
        self.prenet = Prenet(n_mel, c.prenet_dim)
        self.attention_rnn = nn.LSTMCell(c.prenet_dim + E, c.attention_rnn_dim)
        self.attention_layer = Attention(c)
        self.decoder_rnn = nn.LSTMCell(c.attention_rnn_dim + E, c.decoder_rnn_dim)
        self.linear_projection = LinearNorm(c.decoder_rnn_dim + E, n_mel)
        self.gate_layer = LinearNorm(c.decoder_rnn_dim + E, 1, gain="sigmoid")

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor):
        """Teacher-forced decoding: memory (B, T_in, E), targets (B, n_mel, T) ->
        mel (B, n_mel, T), gate logits (B, T), alignments (B, T, T_in)."""
        B, t_in, _ = memory.shape
        # step t reads frame t-1 of the target; step 0 reads the zero "go" frame
        go = targets.new_zeros(1, B, self.n_mel)
        inputs = torch.cat([go, targets.permute(2, 0, 1)[:-1]], dim=0)  # (T, B, n_mel)
        inputs = self.prenet(inputs)  # all steps at once: the prenet has no recurrence

        padding = ~lengths_mask(memory_lengths, t_in)
        processed_memory = self.attention_layer.memory_layer(memory)  # fixed for the utterance
        att_h = memory.new_zeros(B, self.attention_rnn.hidden_size)
        att_c = torch.zeros_like(att_h)
        dec_h = memory.new_zeros(B, self.decoder_rnn.hidden_size)
        dec_c = torch.zeros_like(dec_h)
        weights = memory.new_zeros(B, t_in, dtype=torch.float32)
        weights_cum = torch.zeros_like(weights)
        context = memory.new_zeros(B, memory.shape[2])

        outs, alignments = [], []
        for x in inputs:
            att_h, att_c = self.attention_rnn(torch.cat([x, context], dim=1), (att_h, att_c))
            att_h = F.dropout(att_h, self.p_attention_dropout, self.training)
            weights_cat = torch.stack([weights, weights_cum], dim=1)
            context, weights = self.attention_layer(att_h, memory, processed_memory, weights_cat, padding)
            weights_cum = weights_cum + weights
            dec_h, dec_c = self.decoder_rnn(torch.cat([att_h, context], dim=1), (dec_h, dec_c))
            dec_h = F.dropout(dec_h, self.p_decoder_dropout, self.training)
            outs.append(torch.cat([dec_h, context], dim=1))
            alignments.append(weights)
        # the projection and the gate have no recurrence: one GEMM each over all steps, not T
        outs = torch.stack(outs, dim=1)  # (B, T, rnn + E)
        mels = self.linear_projection(outs).transpose(1, 2)
        return mels, self.gate_layer(outs)[..., 0], torch.stack(alignments, dim=1)


class Postnet(nn.Module):
    def __init__(self, c: Tacotron2Config):
        super().__init__()
        n = c.postnet_n_convolutions
        dims = [c.n_mel_channels] + [c.postnet_embedding_dim] * (n - 1) + [c.n_mel_channels]
        self.convolutions = nn.ModuleList(
            [conv_bn(dims[i], dims[i + 1], c.postnet_kernel_size, "tanh" if i < n - 1 else "linear")
             for i in range(n)])

    def forward(self, x, frames_mask=None):
        """frames_mask (1, 1, T): zero each layer's input past the batch's frames (see decode)."""
        last = len(self.convolutions) - 1
        for i, conv in enumerate(self.convolutions):
            x = conv(x if frames_mask is None else x * frames_mask)
            x = F.dropout(torch.tanh(x) if i < last else x, CONV_DROPOUT, self.training)
        return x


class Tacotron2(nn.Module):
    def __init__(self, config: Tacotron2Config = Tacotron2Config(), p_attention_dropout: float = 0.1,
                 p_decoder_dropout: float = 0.1, mask_padding: bool = True):
        super().__init__()
        self.config = config
        self.mask_padding = mask_padding
        self.p_attention_dropout, self.p_decoder_dropout = p_attention_dropout, p_decoder_dropout
        self.embedding = nn.Embedding(config.n_symbols, config.symbols_embedding_dim)
        # uniform with Xavier's variance for an (n_symbols, dim) matrix, as NVIDIA does
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (config.n_symbols + config.symbols_embedding_dim))
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, p_attention_dropout, p_decoder_dropout)
        self.postnet = Postnet(config)

    def forward(self, text, text_lengths, mels, mel_lengths):
        """text (B, T_in) ids, mels (B, n_mel, T) targets ->
        (mel, mel_postnet, gate logits, alignments), the last (B, T, T_in)."""
        return self.decode(self.encode(text, text_lengths), text_lengths, mels, mel_lengths)

    def encode(self, text, text_lengths):
        """text (B, T_in) ids -> memory (B, T_in, E)."""
        return self.encoder(self.embedding(text).transpose(1, 2), text_lengths)

    def decode(self, memory, text_lengths, mels, mel_lengths, frames_mask=None):
        """Teacher-forced decoder and postnet on the encoder's memory; outputs as forward().

        Separate from encode() so that this part, whose shapes can be fixed, can be captured in
        a CUDA graph (train/graphed.py) while the encoder's packed LSTM runs eagerly. There the
        mels are padded past the batch's longest item; frames_mask (1, 1, T) zeroes every postnet
        layer's input on those frames, so its convolutions see zeros there, as they see their
        own zero padding in an unpadded batch (the masked-out frames' outputs are then masked
        with mask_padding, so only the postnet needs it)."""
        mel, gate, alignments = self.decoder(memory, text_lengths, mels)
        mel_postnet = mel + self.postnet(mel, frames_mask)
        if self.mask_padding:
            pad = ~lengths_mask(mel_lengths, mel.shape[2])
            mel = mel.masked_fill(pad[:, None, :], 0.0)
            mel_postnet = mel_postnet.masked_fill(pad[:, None, :], 0.0)
            gate = gate.masked_fill(pad, GATE_PAD_LOGIT)
        return mel, mel_postnet, gate, alignments

    def nvidia_config(self) -> dict[str, Any]:
        """The `config` of a DeepLearningExamples checkpoint: Tacotron2(**config) kwargs."""
        return {**self.config.to_dict(), "mask_padding": self.mask_padding,
                "p_attention_dropout": self.p_attention_dropout, "p_decoder_dropout": self.p_decoder_dropout,
                "decoder_no_early_stopping": False}


# ---------------------------------------------------------------------------------------------
# WaveGlow


class WeightNormConv1d(nn.Module):
    """Conv1d with weight = g * v / ||v|| (norm per output channel), parameters named as torch's
    weight_norm names them, so checkpoints read like NVIDIA's (`weight_g`, `weight_v`, `bias`).

    Weight normalisation decouples each filter's scale from its direction; WaveGlow trains
    noticeably less stably without it.
    """

    def __init__(self, n_in: int, n_out: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        conv = nn.Conv1d(n_in, n_out, kernel_size)  # only for torch's default initialisation
        self.weight_v = nn.Parameter(conv.weight.detach().clone())
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.dilation = dilation
        self.padding = dilation * (kernel_size - 1) // 2

    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(1, 2), keepdim=True)

    def forward(self, x):
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, dilation=self.dilation)


class WN(nn.Module):
    """The WaveNet-like net of one affine coupling: (half of the audio, cond) -> (b, log s)."""

    def __init__(self, n_in: int, n_cond: int, n_layers: int, n_channels: int, kernel_size: int):
        super().__init__()
        assert kernel_size % 2 == 1 and n_channels % 2 == 0
        self.n_layers, self.n_channels = n_layers, n_channels
        # registration order = NVIDIA's state-dict order: in, res_skip, cond, start, end
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.cond_layers = nn.ModuleList()
        self.start = WeightNormConv1d(n_in, n_channels)
        # a zero last layer makes every coupling the identity at the start: stable early training
        self.end = nn.Conv1d(n_channels, 2 * n_in, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)
        for i in range(n_layers):
            self.in_layers.append(WeightNormConv1d(n_channels, 2 * n_channels, kernel_size, dilation=2**i))
            self.cond_layers.append(WeightNormConv1d(n_cond, 2 * n_channels))
            res_skip = 2 * n_channels if i < n_layers - 1 else n_channels  # last: skip half only
            self.res_skip_layers.append(WeightNormConv1d(n_channels, res_skip))

    def forward(self, audio, cond):
        C = self.n_channels
        h = self.start(audio)
        skip = 0
        for i in range(self.n_layers):
            act = self.in_layers[i](h) + self.cond_layers[i](cond)
            act = torch.tanh(act[:, :C]) * torch.sigmoid(act[:, C:])
            res_skip = self.res_skip_layers[i](act)
            if i < self.n_layers - 1:
                h = h + res_skip[:, :C]
                res_skip = res_skip[:, C:]
            skip = skip + res_skip
        return self.end(skip)


class Invertible1x1Conv(nn.Module):
    """A learned rotation of the channels, W, with log|det W| for the likelihood."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 1, bias=False)
        w = torch.linalg.qr(torch.randn(c, c))[0]  # random orthonormal start
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]  # det +1, so W stays in the rotations' connected component
        with torch.no_grad():
            self.conv.weight.copy_(w[:, :, None])

    def log_det(self, batch: int, n_steps: int) -> torch.Tensor:
        """log|det| of the whole layer on (batch, c, n_steps): W applied at every step."""
        return batch * n_steps * torch.logdet(self.conv.weight[:, :, 0].float())

    def forward(self, z, with_log_det: bool = True):
        batch, _, n_steps = z.shape
        return F.conv1d(z, self.conv.weight), self.log_det(batch, n_steps) if with_log_det else None

    def inverse(self, z):
        w_inv = torch.linalg.inv(self.conv.weight[:, :, 0].double()).to(z.dtype)
        return F.conv1d(z, w_inv[:, :, None])


class WaveGlow(nn.Module):
    def __init__(self, config: WaveGlowConfig = WaveGlowConfig()):
        super().__init__()
        c = config
        assert c.n_group % 2 == 0
        self.config = config
        self.upsample = nn.ConvTranspose1d(c.n_mel_channels, c.n_mel_channels, UPSAMPLE_KERNEL,
                                           stride=UPSAMPLE_STRIDE)
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        n_half, n_remaining = c.n_group // 2, c.n_group
        for k in range(c.n_flows):
            if k > 0 and k % c.n_early_every == 0:  # n_early_size channels leave the flow here
                n_half -= c.n_early_size // 2
                n_remaining -= c.n_early_size
            self.convinv.append(Invertible1x1Conv(n_remaining))
            self.WN.append(WN(n_half, c.n_mel_channels * c.n_group, c.wn_n_layers, c.wn_n_channels,
                              c.wn_kernel_size))
        self.n_remaining_channels = n_remaining

    def _cond(self, mel, n_samples):
        """mel (B, n_mel, T) -> upsampled, grouped conditioning (B, n_mel*n_group, n_samples/n_group)."""
        G = self.config.n_group
        spect = self.upsample(mel)[:, :, :n_samples]
        b, c, n = spect.shape
        # channel c*G + g holds sample l*G + g of mel channel c
        return spect.reshape(b, c, n // G, G).permute(0, 1, 3, 2).reshape(b, c * G, n // G)

    def forward(self, mel: torch.Tensor, audio: torch.Tensor, with_log_det: bool = True):
        """mel (B, n_mel, T), audio (B, N) with N <= T*256 -> (z, log_s list, log_det_W list).
        with_log_det=False leaves the log|det W| terms out (an empty list): they do not depend on
        the data, and graphed_waveglow.py adds them outside its CUDA graph (`log_det_total`)."""
        c = self.config
        G = c.n_group
        # the upsampler gives (T-1)*256 + 1024 samples; the audio must fit, and be whole groups
        assert (mel.shape[2] - 1) * UPSAMPLE_STRIDE + UPSAMPLE_KERNEL >= audio.shape[1]
        assert audio.shape[1] % G == 0
        cond = self._cond(mel, audio.shape[1])
        x = audio.reshape(audio.shape[0], -1, G).transpose(1, 2)  # (B, G, N/G)
        early, log_s_list, log_det_list = [], [], []
        for k in range(c.n_flows):
            if k > 0 and k % c.n_early_every == 0:
                early.append(x[:, :c.n_early_size])
                x = x[:, c.n_early_size:]
            x, log_det_w = self.convinv[k](x, with_log_det)
            if with_log_det:
                log_det_list.append(log_det_w)
            n_half = x.shape[1] // 2
            x0, x1 = x[:, :n_half], x[:, n_half:]
            out = self.WN[k](x0, cond)
            b, log_s = out[:, :n_half], out[:, n_half:]
            x = torch.cat([x0, torch.exp(log_s) * x1 + b], dim=1)
            log_s_list.append(log_s)
        early.append(x)
        return torch.cat(early, dim=1), log_s_list, log_det_list

    def log_det_total(self, batch: int, n_samples: int) -> torch.Tensor:
        """The sum of every flow's log|det W| for a batch of `n_samples`-sample segments: what
        forward's log_det_W list adds up to."""
        n_steps = n_samples // self.config.n_group
        return sum(conv.log_det(batch, n_steps) for conv in self.convinv)

    @torch.no_grad()
    def infer(self, mel: torch.Tensor, z: torch.Tensor, sigma: float = 0.6) -> torch.Tensor:
        """mel (B, n_mel, T), z (B, n_group, T*256/n_group) unit noise -> audio (B, T*256).

        The channel order of z is that of the NumPy reference (`tts_desktop.model.waveglow`):
        the first n_remaining_channels start the reverse flow, then the early blocks in turn.
        """
        c = self.config
        n_samples = mel.shape[2] * UPSAMPLE_STRIDE
        cond = self._cond(mel, n_samples)  # drops the upsampler's last kernel-stride samples
        z = sigma * z
        x = z[:, :self.n_remaining_channels]
        next_early = self.n_remaining_channels
        for k in reversed(range(c.n_flows)):
            n_half = x.shape[1] // 2
            out = self.WN[k](x[:, :n_half], cond)
            b, log_s = out[:, :n_half], out[:, n_half:]
            x = torch.cat([x[:, :n_half], (x[:, n_half:] - b) / torch.exp(log_s)], dim=1)
            x = self.convinv[k].inverse(x)
            if k > 0 and k % c.n_early_every == 0:
                x = torch.cat([z[:, next_early:next_early + c.n_early_size], x], dim=1)
                next_early += c.n_early_size
        return x.transpose(1, 2).reshape(x.shape[0], -1)

    def nvidia_config(self) -> dict[str, Any]:
        """The `config` of a DeepLearningExamples checkpoint: WaveGlow(**config) kwargs."""
        c = self.config
        return {"n_mel_channels": c.n_mel_channels, "n_flows": c.n_flows, "n_group": c.n_group,
                "n_early_every": c.n_early_every, "n_early_size": c.n_early_size,
                "WN_config": {"n_layers": c.wn_n_layers, "kernel_size": c.wn_kernel_size,
                              "n_channels": c.wn_n_channels}}


# ---------------------------------------------------------------------------------------------
# plain (folded) weights: export and warm starts


@torch.no_grad()
def folded_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as the app stores it: float32 NumPy, weight norm folded into `weight`,
    BatchNorm's num_batches_tracked counters dropped."""
    out: dict[str, np.ndarray] = {}
    wn_prefixes = {name for name, m in model.named_modules() if isinstance(m, WeightNormConv1d)}
    for name, module in model.named_modules():
        if name in wn_prefixes:
            out[f"{name}.weight"] = module.weight().float().cpu().numpy()
            out[f"{name}.bias"] = module.bias.float().cpu().numpy()
    for key, value in model.state_dict().items():
        prefix = key.rsplit(".", 1)[0]
        if prefix in wn_prefixes or key.endswith("num_batches_tracked"):
            continue
        out[key] = value.float().cpu().numpy()
    return out


@torch.no_grad()
def load_folded_state_dict(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Load plain weights (as `folded_state_dict` gives, e.g. from the FP16 export) into the
    model: a weight-normed conv gets v = weight, g = ||weight|| per output channel."""
    state = model.state_dict()
    expected = set(folded_state_dict(model))
    missing, extra = expected - set(weights), set(weights) - expected
    if missing or extra:
        raise KeyError(f"weights do not fit the model: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}")
    wn_modules = {name: m for name, m in model.named_modules() if isinstance(m, WeightNormConv1d)}
    for key, value in weights.items():
        value = torch.as_tensor(np.asarray(value, np.float32))
        prefix, leaf = key.rsplit(".", 1)
        if prefix in wn_modules:
            module = wn_modules[prefix]
            if leaf == "weight":
                # a channel the training switched off (g -> 0) comes back as zeros, whose
                # direction is undefined (0/0 in the forward): it gets g = 0 and a unit v, so its
                # weight stays 0 and the gradient of g can still bring it back
                norm = value.norm(dim=(1, 2), keepdim=True)
                dead = (norm == 0).expand_as(value)
                module.weight_v.copy_(torch.where(dead, torch.ones_like(value), value))
                module.weight_g.copy_(norm)
            else:
                module.bias.copy_(value)
        else:
            state[key].copy_(value)
