"""Tacotron2 inference in NumPy: the reference the GPU engine is tested against, and the CPU fallback.

It computes what NVIDIA's DeepLearningExamples `Tacotron2.infer` computes, read top to bottom:

    ids -> embedding -> 3 x (conv5 + BatchNorm + ReLU) -> bidirectional LSTM   = memory (B, T_in, C)
    memory -> autoregressive decoder, one 80-bin mel frame per step             = mel, gate, alignment
    mel -> postnet (5 x conv5 + BatchNorm, tanh on all but the last) + mel      = mel_postnet

Weights are the flat state dict of `importer.load_tacotron2` (NVIDIA key names, float32). At
construction they are rearranged once into the matrices the computation wants (row vector @ matrix),
so every step is a handful of BLAS calls and no Python loop runs over channels:

- BatchNorm (inference) is an affine map per channel, folded into the preceding conv:
  W' = W * g / sqrt(var + eps),  b' = (b - mean) * g / sqrt(var + eps) + beta   (folded in float64).
- An LSTM's two products x @ W_ih^T + h @ W_hh^T are one product [x, h] @ [W_ih, W_hh]^T, and its
  two bias vectors are one sum.
- The location layer is conv1d(2 -> F, kernel K, no bias) followed by dense(F -> A, no bias): both
  linear, so together they are one conv1d(2 -> A, kernel K) with W_loc[a, c, k] = sum_f
  dense[a, f] * conv[f, c, k]; applied as a (T_in, 2K) window matrix @ (2K, A).
- The mel projection and the gate layer read the same input; they are one (D + C, 80 + 1) matrix.
- memory @ memory_layer^T (the "processed memory") does not change during decoding: computed once.

Batches. Each item of a batch gives what it gives run alone (up to float rounding). Two places
where NVIDIA's batched code does not have that property are made to have it here, on purpose:
the encoder convolutions and the postnet see zeros beyond each item's own length (NVIDIA's see
the embedding of the padding symbol, or the previous layer's output on padded frames), and an item
that has stopped is dropped from the decoder batch (NVIDIA keeps stepping it and throws the frames
away). For a single item, everything equals NVIDIA's own output.

Stopping (NVIDIA's `Decoder.infer`): after step t (0-based) an item is finished once
sigmoid(gate_t) > gate_threshold. `lengths` counts the steps before that first stop step, so the
stop step's frame is produced but not counted (NVIDIA's `mel_lengths`); an item that never stops
has lengths = steps run and reached_max = True. With early stopping the loop ends once every item
has finished, so a lone item gives lengths + 1 frames (the stop frame included, as NVIDIA returns
it). `n_frames` is that count per item; in a batch, output positions t >= n_frames of an item are
filled with 0 (mel, mel_postnet, alignment) and with +1e3 for the gate logit (a "stopped" logit, the
value NVIDIA's training code puts on padded frames). With `early_stop=False` every item runs
exactly `max_steps` steps, nothing is filled, and `lengths` still reports where each would stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tts_desktop.cancel import CancelCheck
from tts_desktop.cancel import check as check_cancel
from tts_desktop.model.config import Tacotron2Config

BATCHNORM_EPS = 1e-5
PRENET_DROPOUT = 0.5  # NVIDIA's prenet keeps dropout on at inference, p = 0.5
GATE_FILL = np.float32(1e3)  # gate logit written on frames after an item's stop


# ----------------------------------------------------------------------------------------------
# small numeric helpers


def sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large |x|, same value as 1 / (1 + exp(-x)) to float rounding
    return (0.5 + 0.5 * np.tanh(0.5 * x)).astype(x.dtype, copy=False)


def lstm_gates(z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM update from pre-activations z (..., 4H) in PyTorch's gate order i, f, g, o."""
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return h, c


def conv1d_same(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """'Same' conv over time of x (B, T, C_in) with w (C_in * K, C_out) laid out as (c, k) rows."""
    c_in = x.shape[-1]
    k = w.shape[0] // c_in
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
    # windows (B, T, C_in, K): each output step's receptive field, flattened to match w's rows
    cols = sliding_window_view(xp, k, axis=1).reshape(x.shape[0], x.shape[1], c_in * k)
    y = cols @ w
    return y if b is None else y + b


def time_mask(lengths: np.ndarray, t_max: int) -> np.ndarray:
    """(B, T) bool, True on each item's valid steps."""
    return np.arange(t_max)[None, :] < np.asarray(lengths)[:, None]


# ----------------------------------------------------------------------------------------------
# weight rearrangement (done once, at construction)


def _conv_matrix(w: np.ndarray) -> np.ndarray:
    """torch conv1d weight (C_out, C_in, K) -> (C_in * K, C_out) for `conv1d_same`."""
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)


def _conv_bn(weights: dict, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """A conv followed by inference BatchNorm, folded into one conv (float64, then float32)."""
    w = weights[f"{conv}.weight"].astype(np.float64)
    b = weights[f"{conv}.bias"].astype(np.float64)
    scale = weights[f"{bn}.weight"] / np.sqrt(weights[f"{bn}.running_var"].astype(np.float64) + BATCHNORM_EPS)
    w = w * scale[:, None, None]
    b = (b - weights[f"{bn}.running_mean"]) * scale + weights[f"{bn}.bias"]
    return _conv_matrix(w).astype(np.float32), b.astype(np.float32)


def _lstm(weights: dict, prefix: str, suffix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """[x, h] @ W + b for a torch LSTM(Cell): W = [W_ih, W_hh]^T (in + H, 4H), b = b_ih + b_hh."""
    w = np.concatenate([weights[f"{prefix}weight_ih{suffix}"], weights[f"{prefix}weight_hh{suffix}"]], axis=1)
    b = weights[f"{prefix}bias_ih{suffix}"] + weights[f"{prefix}bias_hh{suffix}"]
    return np.ascontiguousarray(w.T, dtype=np.float32), b.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# outputs


@dataclass
class DecoderOutput:
    mel: np.ndarray  # (B, n_mel, T_out) before the postnet
    gate: np.ndarray  # (B, T_out) stop logits
    alignment: np.ndarray  # (B, T_out, T_in) attention weights per step
    lengths: np.ndarray  # (B,) int: steps before each item's stop step (NVIDIA's mel_lengths)
    reached_max: np.ndarray  # (B,) bool: never stopped within the steps run
    n_frames: np.ndarray  # (B,) int: valid frames per item in the arrays above (see module doc)


@dataclass
class InferOutput:
    mel_postnet: np.ndarray  # (B, n_mel, T_out) the mel to vocode
    mel: np.ndarray
    gate: np.ndarray
    alignment: np.ndarray
    lengths: np.ndarray
    reached_max: np.ndarray
    n_frames: np.ndarray
    memory: np.ndarray  # (B, T_in, C) encoder output


# ----------------------------------------------------------------------------------------------
# the model


class Tacotron2:
    def __init__(self, config: Tacotron2Config, weights: dict[str, np.ndarray]):
        if config.n_frames_per_step != 1:
            raise ValueError("only n_frames_per_step = 1 is supported (NVIDIA's published models)")
        self.config = config
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}

        # encoder
        self.embedding = w["embedding.weight"]
        self.enc_convs = [
            _conv_bn(w, f"encoder.convolutions.{i}.0.conv", f"encoder.convolutions.{i}.1")
            for i in range(config.encoder_n_convolutions)
        ]
        # the two LSTM directions stacked on a leading axis, stepped together by one batched matmul
        fwd, bwd = _lstm(w, "encoder.lstm.", "_l0"), _lstm(w, "encoder.lstm.", "_l0_reverse")
        c_in = self.embedding.shape[1]
        self.enc_w_ih = np.stack([fwd[0][:c_in], bwd[0][:c_in]])  # (2, C, 4H)
        self.enc_w_hh = np.stack([fwd[0][c_in:], bwd[0][c_in:]])  # (2, H, 4H)
        self.enc_b = np.stack([fwd[1], bwd[1]])[:, None, None, :]  # (2, 1, 1, 4H)

        # decoder
        d = "decoder."
        self.prenet = [
            np.ascontiguousarray(w[f"{d}prenet.layers.{i}.linear_layer.weight"].T) for i in range(2)
        ]
        self.att_rnn_w, self.att_rnn_b = _lstm(w, f"{d}attention_rnn.")  # input [prenet, context, h]
        a = f"{d}attention_layer."
        self.query_w = np.ascontiguousarray(w[f"{a}query_layer.linear_layer.weight"].T)  # (A_rnn, A)
        self.memory_w = np.ascontiguousarray(w[f"{a}memory_layer.linear_layer.weight"].T)  # (C, A)
        self.v = np.ascontiguousarray(w[f"{a}v.linear_layer.weight"][0])  # (A,)
        conv = w[f"{a}location_layer.location_conv.conv.weight"].astype(np.float64)  # (F, 2, K)
        dense = w[f"{a}location_layer.location_dense.linear_layer.weight"].astype(np.float64)  # (A, F)
        loc = np.einsum("af,fck->ack", dense, conv)  # conv then dense == one conv (2 -> A)
        self.loc_w = _conv_matrix(loc).astype(np.float32)  # (2K, A)
        self.loc_k = conv.shape[-1]
        self.dec_rnn_w, self.dec_rnn_b = _lstm(w, f"{d}decoder_rnn.")  # input [att_h, context, h]
        self.out_w = np.ascontiguousarray(
            np.concatenate(
                [w[f"{d}linear_projection.linear_layer.weight"], w[f"{d}gate_layer.linear_layer.weight"]]
            ).T
        )  # (D + C, n_mel + 1): mel frame and gate logit in one product
        self.out_b = np.concatenate(
            [w[f"{d}linear_projection.linear_layer.bias"], w[f"{d}gate_layer.linear_layer.bias"]]
        )

        # postnet
        self.post_convs = [
            _conv_bn(w, f"postnet.convolutions.{i}.0.conv", f"postnet.convolutions.{i}.1")
            for i in range(config.postnet_n_convolutions)
        ]

    # ------------------------------------------------------------------------------------------
    # encoder

    def encode(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Symbol ids (B, T_in) and true lengths (B,) -> memory (B, T_in, C), zero beyond each length."""
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
            raise ValueError(f"ids must be (B, T) and lengths (B,), got {ids.shape} and {lengths.shape}")
        if lengths.min() < 1 or lengths.max() > ids.shape[1]:
            raise ValueError(f"lengths must lie in 1..{ids.shape[1]}, got {lengths.tolist()}")
        valid = time_mask(lengths, ids.shape[1])[:, :, None]

        x = self.embedding[ids]
        for w, b in self.enc_convs:
            # zeroing padded steps before each conv makes an item's result independent of the batch
            x = np.maximum(conv1d_same(np.where(valid, x, 0), w, b), 0)  # dropout off at inference
        return self._bilstm(x, lengths)

    def _bilstm(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Bidirectional LSTM with packed-sequence semantics over x (B, T, C)."""
        bsz, t_max, _ = x.shape
        hidden = self.enc_w_hh.shape[1]
        # input contributions of all steps at once: (2, B, T, 4H)
        xz = np.matmul(x[None], self.enc_w_ih[:, None]) + self.enc_b
        h = np.zeros((2, bsz, 1, hidden), np.float32)
        c = np.zeros_like(h)
        out = np.zeros((2, bsz, t_max, hidden), np.float32)
        for s in range(t_max):
            fw, bw = s, t_max - 1 - s  # the forward direction reads step s, the backward T-1-s
            z = np.stack([xz[0, :, fw], xz[1, :, bw]])[:, :, None] + np.matmul(h, self.enc_w_hh[:, None])
            h_new, c_new = lstm_gates(z, c)
            # a step beyond an item's length leaves its state alone: the forward state freezes after
            # the last token and the backward state stays zero until the item's own last token
            ok = np.stack([fw < lengths, bw < lengths])[:, :, None, None]
            h, c = np.where(ok, h_new, h), np.where(ok, c_new, c)
            y = np.where(ok, h_new, 0)[:, :, 0]  # packed output: zero on padded steps
            out[0, :, fw], out[1, :, bw] = y[0], y[1]
        return np.concatenate([out[0], out[1]], axis=-1)

    # ------------------------------------------------------------------------------------------
    # decoder

    def decode(
        self,
        memory: np.ndarray,
        lengths: np.ndarray,
        *,
        max_steps: int | None = None,
        gate_threshold: float | None = None,
        early_stop: bool = True,
        prenet_dropout: bool = True,
        rng: np.random.Generator | None = None,
        teacher_frames: np.ndarray | None = None,
        cancel: CancelCheck | None = None,
    ) -> DecoderOutput:
        """Autoregressive decoding from memory (B, T_in, C); see the module doc for stopping.

        prenet_dropout: NVIDIA's inference keeps the prenet dropout on (p = 0.5); `rng` seeds it.
        teacher_frames (B, n_mel, T): step t >= 1 is fed teacher_frames[..., t - 1] instead of the
        model's own previous frame (step 0 always gets the zero "go" frame); max_steps then defaults
        to T and may be at most T + 1.
        cancel: checked before every step; when it returns True, SynthesisCancelled is raised.
        """
        cfg = self.config
        memory = np.asarray(memory, dtype=np.float32)
        lengths = np.asarray(lengths, dtype=np.int64)
        bsz, t_in, _ = memory.shape
        if lengths.shape != (bsz,) or lengths.min() < 1 or lengths.max() > t_in:
            raise ValueError(f"lengths must be ({bsz},) in 1..{t_in}, got {lengths.tolist()}")
        n_mel = cfg.n_mel_channels
        threshold = np.float32(cfg.gate_threshold if gate_threshold is None else gate_threshold)
        if teacher_frames is not None:
            teacher_frames = np.asarray(teacher_frames, dtype=np.float32)
            if teacher_frames.shape[:2] != (bsz, n_mel):
                raise ValueError(f"teacher_frames must be ({bsz}, {n_mel}, T), got {teacher_frames.shape}")
            t_teach = teacher_frames.shape[2]
            max_steps = t_teach if max_steps is None else max_steps
            if max_steps > t_teach + 1:
                raise ValueError(f"{t_teach} teacher frames feed at most {t_teach + 1} steps, not {max_steps}")
        max_steps = cfg.max_decoder_steps if max_steps is None else int(max_steps)
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if prenet_dropout and rng is None:
            rng = np.random.default_rng()

        # per-item results, written as the items step; unwritten positions keep the fill values
        mel = np.zeros((bsz, max_steps, n_mel), np.float32)
        gate = np.full((bsz, max_steps), GATE_FILL, np.float32)
        align = np.zeros((bsz, max_steps, t_in), np.float32)
        out_lengths = np.zeros(bsz, np.int64)
        finished = np.zeros(bsz, bool)

        # the decoder state of the items still running; rows are dropped as items stop
        live = np.arange(bsz)
        mem = memory
        pmem = memory @ self.memory_w  # processed memory (B, T_in, A)
        masked = ~time_mask(lengths, t_in)
        state = self._initial_state(bsz, t_in, memory.shape[2])

        steps = 0
        for t in range(max_steps):
            check_cancel(cancel)
            if t == 0:
                frame = np.zeros((live.size, n_mel), np.float32)  # the "go" frame
            elif teacher_frames is not None:
                frame = teacher_frames[live, :, t - 1]
            else:
                frame = mel[live, t - 1]
            keep = None
            if prenet_dropout:
                keep = [rng.random((live.size, w.shape[1])) >= PRENET_DROPOUT for w in self.prenet]
            out, weights, state = self._step(frame, state, mem, pmem, masked, keep)
            mel[live, t], gate[live, t], align[live, t] = out[:, :n_mel], out[:, n_mel], weights
            steps = t + 1

            # NVIDIA: not_finished *= (sigmoid(gate) <= threshold); mel_lengths += not_finished
            finished[live] |= sigmoid(out[:, n_mel]) > threshold
            out_lengths[live] += ~finished[live]
            if early_stop:
                running = ~finished[live]
                if not running.any():
                    break
                if not running.all():
                    live, mem, pmem, masked = live[running], mem[running], pmem[running], masked[running]
                    state = {k: v[running] for k, v in state.items()}

        reached_max = ~finished
        if early_stop:
            n_frames = np.where(reached_max, steps, out_lengths + 1)
        else:
            n_frames = np.full(bsz, steps, np.int64)
        return DecoderOutput(
            mel=np.ascontiguousarray(mel[:, :steps].transpose(0, 2, 1)),
            gate=gate[:, :steps].copy(),
            alignment=align[:, :steps].copy(),
            lengths=out_lengths,
            reached_max=reached_max,
            n_frames=n_frames,
        )

    def _initial_state(self, bsz: int, t_in: int, c: int) -> dict[str, np.ndarray]:
        a_rnn = self.query_w.shape[0]
        d_rnn = self.dec_rnn_w.shape[1] // 4
        zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
        return {
            "att_h": zeros(bsz, a_rnn), "att_c": zeros(bsz, a_rnn),
            "dec_h": zeros(bsz, d_rnn), "dec_c": zeros(bsz, d_rnn),
            "weights": zeros(bsz, t_in), "weights_cum": zeros(bsz, t_in),
            "context": zeros(bsz, c),
        }  # fmt: skip

    def _step(self, frame, state, memory, pmemory, masked, keep):
        """One decoder step for the running items -> ([mel frame, gate] (B, n_mel + 1), weights, state)."""
        x = frame
        for i, w in enumerate(self.prenet):
            x = np.maximum(x @ w, 0)
            if keep is not None:
                x = np.where(keep[i], x * np.float32(1 / (1 - PRENET_DROPOUT)), 0).astype(np.float32)

        z = np.concatenate([x, state["context"], state["att_h"]], axis=1) @ self.att_rnn_w + self.att_rnn_b
        att_h, att_c = lstm_gates(z, state["att_c"])

        weights = self._attend(att_h, state["weights"], state["weights_cum"], pmemory, masked)
        context = np.matmul(weights[:, None, :], memory)[:, 0]
        weights_cum = state["weights_cum"] + weights

        z = np.concatenate([att_h, context, state["dec_h"]], axis=1) @ self.dec_rnn_w + self.dec_rnn_b
        dec_h, dec_c = lstm_gates(z, state["dec_c"])

        out = np.concatenate([dec_h, context], axis=1) @ self.out_w + self.out_b
        new_state = {
            "att_h": att_h, "att_c": att_c, "dec_h": dec_h, "dec_c": dec_c,
            "weights": weights, "weights_cum": weights_cum, "context": context,
        }  # fmt: skip
        return out, weights, new_state

    def _attend(self, query, weights, weights_cum, pmemory, masked):
        """Location-sensitive attention weights (B, T_in) for the attention RNN output `query`."""
        bsz, t_in = weights.shape
        pad = (self.loc_k - 1) // 2
        prev = np.pad(np.stack([weights, weights_cum], axis=1), ((0, 0), (0, 0), (pad, pad)))
        # (B, 2, T_in, K) -> (B, T_in, 2K): rows in the (channel, tap) order of loc_w
        cols = sliding_window_view(prev, self.loc_k, axis=2).transpose(0, 2, 1, 3).reshape(bsz, t_in, -1)
        e = np.tanh((query @ self.query_w)[:, None, :] + cols @ self.loc_w + pmemory) @ self.v
        e = np.where(masked, -np.inf, e)
        e = np.exp(e - e.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    # ------------------------------------------------------------------------------------------
    # postnet and the whole pipeline

    def postnet(self, mel: np.ndarray, n_frames: np.ndarray | None = None) -> np.ndarray:
        """mel (B, n_mel, T) -> mel + postnet residual. Frames t >= n_frames[b] count as absent
        (zero going into every conv, zero in the result), as if the item were alone."""
        mel = np.asarray(mel, dtype=np.float32)
        x = mel.transpose(0, 2, 1)  # (B, T, n_mel)
        t_max = x.shape[1]
        valid = time_mask(np.full(len(x), t_max) if n_frames is None else n_frames, t_max)[:, :, None]
        last = len(self.post_convs) - 1
        for i, (w, b) in enumerate(self.post_convs):
            x = conv1d_same(np.where(valid, x, 0), w, b)
            if i < last:
                x = np.tanh(x)
        valid = valid.transpose(0, 2, 1)  # (B, 1, T)
        return np.where(valid, mel + x.transpose(0, 2, 1), 0).astype(np.float32)

    def infer(self, ids: np.ndarray, lengths: np.ndarray, **decode_kwargs) -> InferOutput:
        """Text ids (B, T_in) + lengths (B,) -> mel_postnet and the decoder's outputs."""
        memory = self.encode(ids, lengths)
        dec = self.decode(memory, lengths, **decode_kwargs)
        return InferOutput(
            mel_postnet=self.postnet(dec.mel, dec.n_frames),
            mel=dec.mel,
            gate=dec.gate,
            alignment=dec.alignment,
            lengths=dec.lengths,
            reached_max=dec.reached_max,
            n_frames=dec.n_frames,
            memory=memory,
        )
