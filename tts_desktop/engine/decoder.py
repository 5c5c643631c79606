"""The Tacotron2 decoder on the GPU: kernels/decoder.cu driven by a CUDA graph.

One decoder step is five kernels (see decoder.cu), launched with programmatic dependent launch (PDL,
sm_90+; `pdl=False` turns it off) so each kernel's launch and weight loads overlap the end of the
kernel before it. The whole autoregressive loop is one graph launch:
a conditional WHILE node whose body holds `unroll` steps; dec_project's last block clears the
condition once every item has stopped (gate) or hit its cap. Fallback (`mode='chunk'`): a plain
graph of `chunk` steps replayed until the device says done, one host check per chunk. Either way no
Python runs per step. Kernels skip work once done is set, so extra steps in a graph are free.

Precision: 'fp16' keeps every weight matrix and the encoder memory in half precision and does all
arithmetic and keeps all state in float (the weights, ~36 MB at NVIDIA's sizes, then stay in a
50 MB L2); 'fp32' keeps everything float. Beyond batch 4 (LSTM_BT) the FP16 engine runs both LSTMs
on tensor cores (dec_lstm_*_tc, sm_80+), their float inputs split into two halves so that the math
keeps ~22 bits: at batch 32 on an H100 the step drops from 187.5 to 84.6 us.

Semantics follow tts_desktop.model.tacotron2.Tacotron2.decode (NVIDIA's Decoder.infer): lengths
count steps before the stop step; an item's frames from n_frames on are filled (mel 0, alignment 0,
gate +1e3); the prenet dropout (p = 0.5) is on by default, drawn from a Philox counter RNG keyed by
`seed`, so a given seed gives the same audio on every run and batch size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.config import Tacotron2Config
from .runtime import DeviceArray, GpuContext, _check, _kernel_arg

GATE_FILL = np.float32(1e3)


def context_dims(enc: int) -> int:
    """Dims of the context per dec_att_context block (decoder.cu's CTX_D): 128 at NVIDIA's sizes (four
    blocks per item); smaller encoders (the golden model's 64) take the largest power of two that
    divides them, down to the kernel's 8-wide loads."""
    for d in (128, 64, 32, 16, 8):
        if enc % d == 0:
            return d
    raise ValueError(f"encoder_embedding_dim {enc} is not a multiple of 8")


PROJ_ROWS = 8  # projection rows per dec_project block (decoder.cu)
LSTM_BT = 4  # items per weight load of decoder.cu's lstm_cell: beyond this the FP16 engine uses tensor cores
LSTM_TC_ROWT = 1  # 16-row tiles per dec_lstm_*_tc block (decoder.cu), the rest of its 8 warps split K


def tensor_core_lstm_fits(cfg: Tacotron2Config, rowt: int = LSTM_TC_ROWT) -> bool:
    """decoder.cu's LSTM_TC: both LSTMs' inputs + hidden a multiple of 32 and whole row tiles per block
    (true at NVIDIA's sizes and the golden model's)."""
    E, R, D = cfg.encoder_embedding_dim, cfg.attention_rnn_dim, cfg.decoder_rnn_dim
    return ((cfg.prenet_dim + E + R) % 32 == 0 and (R + E + D) % 32 == 0
            and R % (4 * rowt) == 0 and D % (4 * rowt) == 0)


@dataclass
class GpuDecodeResult:
    mel: np.ndarray  # (B, n_mel, T)
    gate: np.ndarray  # (B, T)
    alignment: np.ndarray | None  # (B, T, T_in)
    lengths: np.ndarray  # (B,) NVIDIA's mel_lengths
    reached_max: np.ndarray  # (B,) bool: hit its cap without the gate firing
    n_frames: np.ndarray  # (B,) valid frames per item
    steps: int


def pack_decoder_weights(cfg: Tacotron2Config, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NVIDIA's decoder tensors -> the layouts decoder.cu reads (float32; cast per precision later)."""
    d = "decoder."
    f32 = lambda k: np.asarray(w[k], np.float32)  # noqa: E731

    def lstm(prefix: str):
        W = np.concatenate([f32(f"{prefix}weight_ih"), f32(f"{prefix}weight_hh")], axis=1)  # (4H, K)
        H = W.shape[0] // 4
        Wp = np.ascontiguousarray(W.reshape(4, H, -1).transpose(1, 0, 2))  # (H, 4, K): a unit's 4 rows adjacent
        b = (f32(f"{prefix}bias_ih") + f32(f"{prefix}bias_hh")).reshape(4, H).T
        return Wp, np.ascontiguousarray(b)

    a = f"{d}attention_layer."
    att_w, att_b = lstm(f"{d}attention_rnn.")
    # location conv (F, 2, K) then dense (A, F), both linear without bias: one conv 2 -> A (float64)
    loc = np.einsum("af,fck->ack", np.asarray(w[f"{a}location_layer.location_dense.linear_layer.weight"], np.float64),
                    np.asarray(w[f"{a}location_layer.location_conv.conv.weight"], np.float64))
    dec_w, dec_b = lstm(f"{d}decoder_rnn.")
    return {
        "prenet1": f32(f"{d}prenet.layers.0.linear_layer.weight"),  # (PRENET, N_MEL)
        "prenet2": f32(f"{d}prenet.layers.1.linear_layer.weight"),  # (PRENET, PRENET)
        "att_w": att_w, "att_b": att_b, "dec_w": dec_w, "dec_b": dec_b,
        "query": f32(f"{a}query_layer.linear_layer.weight"),  # (A, ATT_RNN)
        "memory": f32(f"{a}memory_layer.linear_layer.weight"),  # (A, ENC)
        "v": np.ascontiguousarray(f32(f"{a}v.linear_layer.weight")[0]),  # (A,)
        "loc": np.ascontiguousarray(loc, np.float32),  # (A, 2, K)
        "out_w": np.concatenate([f32(f"{d}linear_projection.linear_layer.weight"),
                                 f32(f"{d}gate_layer.linear_layer.weight")]),  # (N_MEL + 1, DEC_RNN + ENC)
        "out_b": np.concatenate([f32(f"{d}linear_projection.linear_layer.bias"),
                                 f32(f"{d}gate_layer.linear_layer.bias")]),
    }  # fmt: skip


# weights that go to the GPU in the engine's weight type; the rest stay float
_WT_KEYS = ("prenet1", "prenet2", "att_w", "dec_w", "query", "memory", "out_w")


def decoder_defines(cfg: Tacotron2Config, half: bool, lstm_split: int = 2, energy_tt: int = 16,
                    energy_ad: int = 8) -> dict:
    """-D sizes for decoder.cu. `energy_tt` is kept for callers of v3 and no longer used."""
    return {
        "DEC_HALF": int(half), "N_MEL": cfg.n_mel_channels, "PRENET": cfg.prenet_dim,
        "ENC": cfg.encoder_embedding_dim, "ATT_RNN": cfg.attention_rnn_dim, "DEC_RNN": cfg.decoder_rnn_dim,
        "ATT_DIM": cfg.attention_dim, "LOC_F": cfg.attention_location_n_filters,
        "LOC_K": cfg.attention_location_kernel_size, "LSTM_SPLIT": lstm_split, "ENERGY_AD": energy_ad,
        "CTX_D": context_dims(cfg.encoder_embedding_dim), "LSTM_TC_ROWT": LSTM_TC_ROWT,
    }  # fmt: skip


class _Plan:
    """Buffers and graph for one shape (B, T_in, T_out, teacher length, options)."""

    def __init__(self, dec: "GpuDecoder", B: int, T_in: int, T_out: int, T_teach: int, want_align: bool,
                 threshold: float, mode: str, unroll: int, chunk: int) -> None:
        ctx, cfg = dec.ctx, dec.cfg
        self.B, self.T_in, self.T_out, self.T_teach = B, T_in, T_out, T_teach
        self.mode, self.unroll, self.chunk = mode, unroll, chunk
        E, R, D, A = cfg.encoder_embedding_dim, cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.attention_dim
        P = cfg.prenet_dim
        # float state, zeroed with one memset per utterance
        sizes = {"h_att": 2 * B * R, "c_att": B * R, "h_dec": 2 * B * D, "c_dec": B * D, "aw": B * T_in,
                 "cum": B * T_in, "ctx": B * E, "prenet": B * P, "y": B * (cfg.n_mel_channels + 1)}
        self.state = ctx.empty(sum(-(-n // 64) * 64 for n in sizes.values()), np.float32)
        self.s: dict[str, DeviceArray] = {}
        off = 0
        for k, n in sizes.items():
            v = self.state.view((n,))
            v.ptr = self.state.ptr + 4 * off
            self.s[k] = v
            off += -(-n // 64) * 64  # 256-byte aligned segments: the kernels load 16 bytes at a time
        # DecCtl (8 ints), then stopped, lengths, caps, in_len, keys, tickets: (B,) each
        self.ints = ctx.empty(8 + 6 * B, np.int32)
        self.ctl = self.ints.view((8,), np.int32)
        self.i: dict[str, DeviceArray] = {}
        for n, k in enumerate(("stopped", "lengths", "caps", "in_len", "keys", "tickets")):
            v = self.ints.view((B,), np.int32)
            v.ptr = self.ints.ptr + 4 * (8 + n * B)
            self.i[k] = v
        self.memory = ctx.empty((B, T_in, E), dec.wdtype)
        self.pm = ctx.empty((B, T_in, A), np.float32)
        # partial energies, one row per slice of ENERGY_AD attention dims; their sum is the energy
        self.energy = ctx.empty((cfg.attention_dim // dec.energy_ad, B, T_in), np.float32)
        self.mel = ctx.empty((B, cfg.n_mel_channels, T_out), np.float32)
        self.gate = ctx.empty((B, T_out), np.float32)
        self.align = ctx.empty((B, T_out, T_in), np.float32) if want_align else None
        self.teacher = ctx.empty((B, cfg.n_mel_channels, T_teach), np.float32) if T_teach else None
        self.threshold = float(threshold)
        self.graph = None
        self.dec = dec

    def _args(self):
        d = self.dec
        return d, d.ctx, d.k, self.B, self.T_in, d.cfg, d.w, self.s, self.i

    def _lstm_kernel_grid(self, name: str, H: int):
        d = self.dec
        if d.tensor_core_lstm and self.B > LSTM_BT:
            return d.k[name + "_tc"], 4 * H // (16 * d.lstm_tc_rowt)
        return d.k[name], -(-H // (8 // d.lstm_split))

    def launch_lstm_att(self, target=None) -> None:
        d, ctx, k, B, T_in, cfg, w, s, i = self._args()
        kernel, grid = self._lstm_kernel_grid("dec_lstm_att", cfg.attention_rnn_dim)
        d._launch(kernel, grid, 0, target, self.ctl,
                  w["att_w"], w["att_b"], s["prenet"], s["ctx"], s["h_att"], s["c_att"], B)

    def launch_energy(self, target=None) -> None:
        d, ctx, k, B, T_in, cfg, w, s, i = self._args()
        d._launch(k["dec_att_energy"], (cfg.attention_dim // d.energy_ad, B),
                  4 * 2 * (T_in + cfg.attention_location_kernel_size - 1), target, self.ctl, w["query"], w["loc"],
                  w["v"], s["h_att"], self.pm, s["aw"], s["cum"], i["in_len"], self.energy, B, T_in)

    def launch_context(self, target=None) -> None:
        d, ctx, k, B, T_in, cfg, w, s, i = self._args()
        d._launch(k["dec_att_context"], (cfg.encoder_embedding_dim // d.ctx_d, B), 4 * T_in, target, self.ctl,
                  self.energy, self.memory, i["in_len"], i["stopped"], s["aw"], s["cum"], s["ctx"],
                  self.align if self.align is not None else np.uintp(0), B, T_in, self.T_out)

    def launch_lstm_dec(self, target=None) -> None:
        d, ctx, k, B, T_in, cfg, w, s, i = self._args()
        kernel, grid = self._lstm_kernel_grid("dec_lstm_dec", cfg.decoder_rnn_dim)
        d._launch(kernel, grid, 0, target, self.ctl,
                  w["dec_w"], w["dec_b"], s["h_att"], s["ctx"], s["h_dec"], s["c_dec"], B)

    def launch_project(self, target=None, use_cond: int = 0, cond=np.uint64(0)) -> None:
        d, ctx, k, B, T_in, cfg, w, s, i = self._args()
        d._launch(k["dec_project"], (-(-(cfg.n_mel_channels + 1) // PROJ_ROWS), B), 0, target, self.ctl,
                  w["out_w"], w["out_b"], w["prenet1"], w["prenet2"], s["h_dec"], s["ctx"],
                  self.teacher if self.teacher is not None else np.uintp(0), self.T_teach, i["caps"], i["keys"],
                  i["stopped"], i["lengths"], i["tickets"], s["y"], self.mel, self.gate, s["prenet"], B,
                  self.T_out, self.threshold, use_cond, cond)

    def launch_step(self, target=None, use_cond: int = 0, cond=np.uint64(0)) -> None:
        """The five kernels of one step, on the context's stream or into a graph builder."""
        self.launch_lstm_att(target)
        self.launch_energy(target)
        self.launch_context(target)
        self.launch_lstm_dec(target)
        self.launch_project(target, use_cond, cond)

    def build_graph(self) -> None:
        ctx = self.dec.ctx
        gb = ctx.graph_builder().begin_building()
        if self.mode == "while":
            cond = gb.create_condition(default_value=1)
            body = gb.while_loop(cond)
            body.begin_building()
            for _ in range(self.unroll):
                self.launch_step(body, 1, cond)
            body.end_building()
        else:
            for _ in range(self.chunk):
                self.launch_step(gb, 0, np.uint64(0))
        gb.end_building()
        self.graph = gb.complete()
        self.graph.upload(ctx.stream)


class GpuDecoder:
    def __init__(self, ctx: GpuContext, cfg: Tacotron2Config, weights: dict[str, np.ndarray], *,
                 precision: str = "fp16", lstm_split: int = 2, energy_tt: int = 16, energy_ad: int = 8,
                 pdl: bool | None = None, tensor_core_lstm: bool | None = None,
                 extra_defines: dict | None = None) -> None:
        """pdl: launch with programmatic dependent launch on sm_90+ (default: on, unless the
        environment sets TTS_DESKTOP_DECODER_PDL=0; run 15: 4-5 us per step faster at batch 1). energy_tt: unused since v4 (kept for callers).
        tensor_core_lstm: the FP16 engine's LSTMs on tensor cores at batch > LSTM_BT (sm_80+, sizes
        that fit; default on unless TTS_DESKTOP_LSTM_TC=0).
        extra_defines: -D overrides for experiments (LSTM_MINB, LSTM_PREFETCH...)."""
        if precision not in ("fp16", "fp32"):
            raise ValueError("precision must be 'fp16' or 'fp32'")
        if cfg.n_frames_per_step != 1:
            raise ValueError("only n_frames_per_step = 1 is supported")
        self.ctx, self.cfg, self.precision = ctx, cfg, precision
        self.half = precision == "fp16"
        self.wdtype = np.float16 if self.half else np.float32
        self.lstm_split, self.energy_tt, self.energy_ad = lstm_split, energy_tt, energy_ad
        if cfg.attention_dim % energy_ad or 32 % energy_ad:
            raise ValueError("energy_ad must divide attention_dim and 32")
        if pdl is None:
            pdl = os.environ.get("TTS_DESKTOP_DECODER_PDL", "1") != "0"
        self.pdl = bool(pdl) and ctx.cc >= (9, 0)
        defines = decoder_defines(cfg, self.half, lstm_split, energy_tt, energy_ad)
        defines.update(extra_defines or {})
        # launch shapes follow the sizes the module is compiled with
        self.ctx_d, self.lstm_tc_rowt = int(defines["CTX_D"]), int(defines["LSTM_TC_ROWT"])
        if tensor_core_lstm is None:
            tensor_core_lstm = os.environ.get("TTS_DESKTOP_LSTM_TC", "1") != "0"
        self.tensor_core_lstm = (bool(tensor_core_lstm) and self.half and ctx.cc >= (8, 0)
                                 and tensor_core_lstm_fits(cfg, self.lstm_tc_rowt))
        self.module = ctx.compile(["decoder.cu"], defines)
        self.k = {n: self.module.kernel(n) for n in ("dec_lstm_att", "dec_att_energy", "dec_att_context",
                                                    "dec_lstm_dec", "dec_project", "dec_cast_memory")}
        if self.tensor_core_lstm:
            self.k.update({n: self.module.kernel(n) for n in ("dec_lstm_att_tc", "dec_lstm_dec_tc")})
        packed = pack_decoder_weights(cfg, weights)
        self.w = {n: ctx.to_device(a, self.wdtype if n in _WT_KEYS else np.float32) for n, a in packed.items()}
        self.weight_bytes = sum(a.nbytes for a in self.w.values())
        self._plans: dict[tuple, _Plan] = {}

    def _launch(self, kernel, grid, shmem: int, target, *args) -> None:
        """ctx.launch plus programmatic stream serialization (PDL) when self.pdl."""
        if not self.pdl:
            self.ctx.launch(kernel, grid, 256, *args, shmem=shmem, stream=target)
            return
        from cuda.core import LaunchConfig, launch

        if shmem > 48 * 1024:
            self.ctx.set_max_dynamic_shmem(kernel, shmem)
        cfg = LaunchConfig(grid=grid, block=256, shmem_size=shmem, programmatic_stream_serialization=True)
        launch(self.ctx.stream if target is None else target, cfg, kernel, *(_kernel_arg(a) for a in args))

    def plan(self, B: int, T_in: int, T_out: int, T_teach: int = 0, alignment: bool = True,
             gate_threshold: float | None = None, mode: str = "while", unroll: int = 1, chunk: int = 16) -> _Plan:
        thr = self.cfg.gate_threshold if gate_threshold is None else gate_threshold
        key = (B, T_in, T_out, T_teach, alignment, thr, mode, unroll, chunk)
        p = self._plans.get(key)
        if p is None:
            if len(self._plans) >= 8:  # shapes come and go with the text; keep a few
                self._plans.pop(next(iter(self._plans)))
            p = self._plans[key] = _Plan(self, B, T_in, T_out, T_teach, alignment, thr, mode, unroll, chunk)
        return p

    def prepare(self, p: _Plan, memory, lengths, *, caps=None, max_steps: int, teacher_frames=None,
                dropout: bool = True, seed: int = 0, item_keys=None) -> None:
        """Upload the inputs, compute the processed memory (cuBLAS) and reset the state (all async)."""
        ctx, cfg = self.ctx, self.cfg
        B, T_in = p.B, p.T_in
        if isinstance(memory, DeviceArray):
            if memory.dtype == p.memory.dtype:
                p.memory.copy_from_device(memory)
            else:
                n = memory.size
                ctx.launch(self.k["dec_cast_memory"], min(-(-n // 256), 4096), 256, memory, p.memory, np.int64(n))
        else:
            p.memory.copy_from(np.asarray(memory), sync=False)
        mem2 = p.memory.view((B * T_in, cfg.encoder_embedding_dim))
        ctx.blas.gemm(mem2, self.w["memory"], p.pm.view((B * T_in, cfg.attention_dim)), trans_b=True)
        lengths = np.asarray(lengths, np.int64)
        if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T_in:
            raise ValueError(f"lengths must be ({B},) within 1..{T_in}")
        caps = np.full(B, max_steps, np.int64) if caps is None else np.minimum(np.asarray(caps, np.int64), max_steps)
        if caps.min() < 1:
            raise ValueError("caps must be >= 1")
        seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        ints = np.zeros(8 + 6 * B, np.int32)  # tickets (the last B) start at 0
        ctl = np.array([0, 0, 0, int(dropout), 0, 0, max_steps, 0], np.int64)
        ctl[4], ctl[5] = seed & 0xFFFFFFFF, seed >> 32
        ints[:8] = ctl.astype(np.uint32).view(np.int32)
        ints[8 + 2 * B: 8 + 3 * B] = caps
        ints[8 + 3 * B: 8 + 4 * B] = lengths
        ints[8 + 4 * B: 8 + 5 * B] = np.arange(B) if item_keys is None else np.asarray(item_keys, np.int64)
        p.ints.copy_from(ints, sync=False)
        p.state.zero()
        p.mel.zero()
        if p.align is not None:
            p.align.zero()
        from cuda.bindings import driver

        _check(driver.cuMemsetD32Async(p.gate.ptr, int(GATE_FILL.view(np.uint32)), p.gate.size, ctx.stream.handle))
        if p.teacher is not None:
            t = np.asarray(teacher_frames, np.float32)
            p.teacher.copy_from(t, sync=False)

    def run(self, p: _Plan) -> None:
        """Run the loop to the end (async for 'while'; 'chunk' reads `done` after each chunk)."""
        if p.graph is None:
            p.build_graph()
        if p.mode == "while":
            p.graph.launch(self.ctx.stream)
            return
        max_chunks = -(-p.T_out // p.chunk)
        for _ in range(max_chunks):
            p.graph.launch(self.ctx.stream)
            if p.ctl.to_host()[1]:
                break

    def decode(self, memory, lengths, *, max_steps: int | None = None, caps=None, teacher_frames=None,
               dropout: bool = True, seed: int = 0, alignment: bool = True, gate_threshold: float | None = None,
               mode: str = "while", unroll: int = 1, chunk: int = 16, item_keys=None) -> GpuDecodeResult:
        """memory (B, T_in, ENC) float32 (NumPy or DeviceArray), lengths (B,) -> GpuDecodeResult.

        teacher_frames (B, n_mel, T): step s >= 1 reads frame s - 1 (max_steps defaults to T).
        caps (B,): per-item step caps (NVIDIA's max_decoder_steps is the global one).
        item_keys (B,): each item's dropout stream (default: its index); give an item the same key
        and seed and it gets the same masks in any batch."""
        B, T_in = memory.shape[0], memory.shape[1]
        T_teach = 0
        if teacher_frames is not None:
            T_teach = int(np.asarray(teacher_frames).shape[2])
            max_steps = T_teach if max_steps is None else max_steps
            if max_steps > T_teach + 1:
                raise ValueError(f"{T_teach} teacher frames feed at most {T_teach + 1} steps")
        max_steps = int(self.cfg.max_decoder_steps if max_steps is None else max_steps)
        p = self.plan(B, T_in, max_steps, T_teach, alignment, gate_threshold, mode, unroll, chunk)
        self.prepare(p, memory, lengths, caps=caps, max_steps=max_steps, teacher_frames=teacher_frames,
                     dropout=dropout, seed=seed, item_keys=item_keys)
        self.run(p)
        return self.fetch(p)

    def fetch(self, p: _Plan) -> GpuDecodeResult:
        ints = p.ints.to_host()
        T = int(ints[0])
        B = p.B
        stopped = ints[8: 8 + B]
        lengths = ints[8 + B: 8 + 2 * B].astype(np.int64)
        reached_max = stopped != 1
        n_frames = np.where(reached_max, lengths, lengths + 1)
        mel = p.mel.to_host()[:, :, :T]
        gate = p.gate.to_host()[:, :T]
        align = p.align.to_host()[:, :T] if p.align is not None else None
        return GpuDecodeResult(np.ascontiguousarray(mel), np.ascontiguousarray(gate),
                               None if align is None else np.ascontiguousarray(align), lengths, reached_max,
                               n_frames, T)

    def info(self) -> dict[str, Any]:
        return {"precision": self.precision, "weight_bytes": self.weight_bytes, "lstm_split": self.lstm_split,
                "energy_ad": self.energy_ad, "pdl": self.pdl, "tensor_core_lstm": self.tensor_core_lstm}
