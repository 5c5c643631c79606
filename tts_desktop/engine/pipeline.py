"""GpuBackend: symbol ids -> audio on the GPU, with CpuBackend's contract (tts_desktop/backends.py).

    encoder -> decoder (CUDA graph, replayed in chunks) -> postnet -> WaveGlow -> denoiser

Everything stays on the device between stages. Host <-> device traffic per call: the ids in; the
audio, the mel, the alignment and the gate out (the GUI shows them); besides those only a few
hundred bytes of control data (the stages' row offsets, the decoder's counters read back after
each chunk).

Semantics are CpuBackend's, item for item: frame counts (the mel keeps the frame the stop token
fired on, the audio is cut to the frames before it), `early_stop=False` decoding every step with
the stop step and `reached_max_steps` still reported from the gate, the denoiser, the fills past
each item's end. Each batch item is computed as if alone (ragged rows laid end to end in every
stage), so batching changes no item's result, up to the summation order cuBLAS picks for another
row count. What cannot match CpuBackend bit for bit is randomness: the prenet dropout masks and
WaveGlow's noise come from Philox counters on the device keyed by `seed` (same seed, same audio,
on every run), not from NumPy's generator. With dropout off and sigma 0 both backends compute the
same function (tests/gpu/test_pipeline_gpu.py).

Cancellation: `cancel` is checked before each stage, after every decoder chunk (CHUNK_STEPS steps,
~1-2 ms of GPU time; one chunk runs ahead, so a cancel lands within two) and after every WaveGlow
group (items grouped up to WG_GROUP_FRAMES mel frames: ~55 ms of FP16 work on an H100 at the most,
one group ahead). On cancel the queued work is drained, then SynthesisCancelled is raised; the engine stays
usable.

Precision: 'fp16', 'fp32' (strict: float32 arithmetic throughout, cuBLAS without TF32), or 'fp32'
with tf32=True, the one stated exception: WaveGlow's cuBLAS GEMMs on TF32 tensor cores (operands
with a 10-bit mantissa, FP32 accumulation); part of the engine's cache key and of `note`.

Timings: device events between stage boundaries on the one stream, in seconds, for the whole batch
(every item of a call gets the same numbers): encoder, decoder, postnet, waveglow, denoiser and
copies (ids in + results out). Griffin-Lim, when chosen, runs on the CPU (the NumPy reference) on
the GPU's mel and is timed on the host.
"""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..backends import BackendResult, pad_ids
from ..cancel import SynthesisCancelled
from ..model.config import VoiceConfig
from .build import Engine, check_tf32, construct_stages, get_engine, module_key, preload_modules
from .runtime import DeviceArray, GpuContext, _check

DEFAULT_MAX_BATCH = 32  # items per call the engine is planned for (part of its cache key)
CHUNK_STEPS = 16        # decoder steps per graph replay (~1.2 ms at ~75 us per step)
T_IN_BUCKET = 32        # the input length rounds up to this: decoder plans (and graphs) get reused
# mel frames per WaveGlow call: ~55 ms of work on an H100, so a cancel lands within ~0.1 s. Fewer,
# larger calls waste less on each call's last partial wave of tiles: FP16 batch 32 of 580 frames
# took 255 ms of WaveGlow in groups of 2048 frames, 241 ms in 4096 and in 8192 (H100, session 8),
# for 0.35 GB more scratch at 4096 (peak 1.6 GB at batch 32), 1 GB more at 8192.
WG_GROUP_FRAMES = {"fp16": 4096, "fp32": 512}
NEVER = np.float32(2.0)  # a gate threshold sigmoid never exceeds: early_stop=False runs every step
HOP = 256               # WaveGlow's upsampling stride (samples per mel frame)

_ctx: GpuContext | None = None
_ctx_lock = threading.Lock()


def shared_context() -> GpuContext:
    """One GpuContext per process (one device, one stream), shared by every GpuBackend."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            _ctx = GpuContext()
        return _ctx


class _Pinned:
    """Page-locked host int32 buffer: the decoder's counters are copied into it asynchronously
    after each chunk, so the host can read chunk i while chunk i + 1 runs."""

    def __init__(self, n: int) -> None:
        from cuda.bindings import driver

        self.ptr = int(_check(driver.cuMemHostAlloc(4 * n, 0)))
        self.array = np.frombuffer((ctypes.c_int32 * n).from_address(self.ptr), np.int32)

    def __del__(self) -> None:
        try:
            from cuda.bindings import driver

            driver.cuMemFreeHost(self.ptr)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _SyncEvent:
    """A non-timing event: record on the stream, wait for it on the host."""

    def __init__(self) -> None:
        from cuda.bindings import driver

        self._d = driver
        self.ev = _check(driver.cuEventCreate(driver.CUevent_flags.CU_EVENT_DISABLE_TIMING))

    def record(self, stream) -> None:
        _check(self._d.cuEventRecord(self.ev, stream.handle))

    def sync(self) -> None:
        _check(self._d.cuEventSynchronize(self.ev))

    def __del__(self) -> None:
        try:
            self._d.cuEventDestroy(self.ev)
        except Exception:  # noqa: BLE001
            pass


def _copy_rows(ctx: GpuContext, host: np.ndarray, src_ptr: int, src_pitch: int, height: int) -> None:
    """host (height, w) <- `height` rows of w elements every `src_pitch` bytes on the device."""
    from cuda.bindings import driver

    m = driver.CUDA_MEMCPY2D()
    m.srcMemoryType = driver.CUmemorytype.CU_MEMORYTYPE_DEVICE
    m.srcDevice = int(src_ptr)
    m.srcPitch = int(src_pitch)
    m.dstMemoryType = driver.CUmemorytype.CU_MEMORYTYPE_HOST
    m.dstHost = host.ctypes.data
    width = host.nbytes // height
    m.dstPitch = width
    m.WidthInBytes = width
    m.Height = int(height)
    _check(driver.cuMemcpy2DAsync(m, ctx.stream.handle))


def _items(a: DeviceArray, start: int, count: int) -> DeviceArray:
    """Items [start, start + count) of an array whose first axis is the batch (a view)."""
    per = a.nbytes // a.shape[0]
    v = a.view((count, *a.shape[1:]))
    v.ptr = a.ptr + start * per
    return v


def _groups(n_frames: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive item ranges of at most `budget` frames (an item longer than that goes alone)."""
    out, start, total = [], 0, 0
    for i, n in enumerate(n_frames.tolist()):
        if i > start and total + n > budget:
            out.append((start, i))
            start, total = i, 0
        total += n
    out.append((start, len(n_frames)))
    return out


class GpuBackend:
    """The GPU engine behind `Voice.load(..., device='cuda')`; see the module doc."""

    def __init__(self, path: Path | None, config: VoiceConfig, tacotron2_weights, waveglow_weights, *,
                 precision: str = "fp16", progress: Callable[[float, str], None] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, cache_dir: Path | None = None, tf32: bool = False,
                 engine: Engine | None = None) -> None:
        """tf32 (precision 'fp32' only, sm_80+): WaveGlow's GEMMs on TF32 tensor cores (see
        build.construct_stages); the default is the strict FP32 engine.
        engine: one already built (get_engine) for this precision, tf32, max_batch and the shared
        context's GPU; backends.BackendBuild builds it on another thread, which needs no device."""
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
        check_tf32(precision, tf32)
        t0 = time.perf_counter()
        self.config, self.precision, self.max_batch = config, precision, int(max_batch)
        self.tf32 = bool(tf32)
        self.ctx = ctx = shared_context()
        if engine is None:
            engine = get_engine(path, config, tacotron2_weights, waveglow_weights, gpu_name=ctx.name,
                                arch=ctx.arch, precision=precision, max_batch=self.max_batch,
                                cache_dir=cache_dir, progress=progress, tf32=self.tf32)
        self.engine = engine
        assert self.engine.key.tf32 == self.tf32  # the key names the numeric contract
        t1 = time.perf_counter()
        preload_modules(ctx, self.engine.modules)
        wanted = {module_key(m) for m in self.engine.modules}
        before = set(ctx._modules)
        self.stages = construct_stages(ctx, config, self.engine.parts, precision, self.engine.key.tf32)
        # a stage asking for a module the engine lacks was just compiled by NVRTC: correct, but
        # the engine is incomplete (the build's plan and the run disagree); say so
        self.compiled_at_load = len(set(ctx._modules) - before - wanted)
        t2 = time.perf_counter()
        self._bias = self._measure_denoiser_bias()
        self._lock = threading.Lock()
        self._bufs: dict[str, DeviceArray] = {}
        self._slots: list[_Pinned] = []
        self._slot_events = [_SyncEvent(), _SyncEvent()]
        self._group_events = [_SyncEvent(), _SyncEvent()]
        ctx.synchronize()
        self.load_seconds = time.perf_counter() - t0
        # seconds: engine file (or build) with its parts, weights to the GPU, denoiser bias
        self.load_breakdown = {"engine": self.engine.seconds, **self.engine.timings, "upload": t2 - t1,
                               "bias": time.perf_counter() - t2}
        self.device_name = ctx.name
        how = "cached" if self.engine.cached else f"built in {self.engine.seconds:.1f} s"
        kind = "FP32 engine with TF32 tensor-core GEMMs in WaveGlow" if self.tf32 else f"{precision.upper()} engine"
        self.note = f"GPU {ctx.name}, {kind} ({how}, ready in {self.load_seconds:.2f} s)"
        if self.compiled_at_load:
            self.note += f"; {self.compiled_at_load} kernel module(s) compiled at load"
        if self.engine.problems:
            self.note += "; " + "; ".join(self.engine.problems)

    # ------------------------------------------------------------------------------ setup
    def _measure_denoiser_bias(self) -> np.ndarray:
        """NVIDIA's denoiser bias (mode 'zeros'): the first STFT frame's magnitude of this engine's
        WaveGlow output for an all-zero 88-frame mel at sigma 0."""
        ctx, wg, dn = self.ctx, self.stages["waveglow"], self.stages["denoiser"]
        mel = ctx.zeros((1, self.config.waveglow.n_mel_channels, 88), np.float32)
        audio = wg.infer(mel, [88], sigma=0.0)
        spec = dn.spectrum(audio, [audio.shape[1]]).astype(np.float64)
        bias = np.sqrt(spec[0, : dn.bins] ** 2 + spec[0, dn.bins:] ** 2).astype(np.float32)
        dn.bias.copy_from(bias)
        return bias

    def peak_memory_bytes(self) -> int:
        """Peak bytes of device memory the engine allocated (weights, scratch, cuBLAS workspace) in
        this process's context; the CUDA context itself is not included."""
        return int(self.ctx.peak_bytes)

    def _buf(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> DeviceArray:
        a = self._bufs.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
            if a is not None:
                a.free()
            a = self._bufs[name] = self.ctx.empty(shape, dtype)
        return a

    # ------------------------------------------------------------------------------ synthesis
    def synthesize_ids(self, batch: list[list[int]], options, seed: int | None = None,
                       cancel: Callable[[], bool] | None = None) -> list[BackendResult]:
        """CpuBackend.synthesize_ids on the GPU (one call at a time; the engine owns one stream)."""
        with self._lock:
            try:
                return self._synthesize(batch, options, seed, cancel)
            except BaseException:
                try:  # leave nothing queued behind: the next call reuses these buffers
                    self.ctx.synchronize()
                except Exception:  # noqa: BLE001 - a CUDA error already on its way up
                    pass
                raise

    def _check_cancel(self, cancel) -> None:
        if cancel is not None and cancel():
            self.ctx.synchronize()
            raise SynthesisCancelled()

    def _synthesize(self, batch, options, seed, cancel) -> list[BackendResult]:
        ctx, cfg = self.ctx, self.config.tacotron2
        bsz = len(batch)
        if not 1 <= bsz <= self.max_batch:
            raise ValueError(f"batch size {bsz} is outside 1..{self.max_batch}")
        ids, lengths = pad_ids(batch)
        if ids.min() < 0 or ids.max() >= cfg.n_symbols:
            raise ValueError(f"symbol ids must lie in 0..{cfg.n_symbols - 1}")
        max_steps = int(options.max_decoder_steps or cfg.max_decoder_steps)
        seeds = np.random.SeedSequence(seed).generate_state(2, np.uint64)
        dec_seed, wg_seed = int(seeds[0]), int(seeds[1])
        self._check_cancel(cancel)

        t_in = -(-ids.shape[1] // T_IN_BUCKET) * T_IN_BUCKET
        ids_pad = np.zeros((bsz, t_in), np.int32)
        ids_pad[:, : ids.shape[1]] = ids
        ev = [("start", ctx.record())]
        ids_dev = self._buf("ids", (bsz, t_in), np.int32)
        ids_dev.copy_from(ids_pad, sync=False)
        ev.append(("copies", ctx.record()))
        memory = self.stages["encoder"].encode(ids_dev, lengths)
        ev.append(("encoder", ctx.record()))
        self._check_cancel(cancel)

        p, ints = self._decode(memory, lengths, max_steps, options, dec_seed, cancel)
        ev.append(("decoder", ctx.record()))
        steps = int(ints[0])  # the decoder's layout (decoder.py): ctl, then per-item int vectors

        def item_ints(name: str) -> np.ndarray:
            at = (p.i[name].ptr - p.ints.ptr) // 4
            return ints[at: at + bsz]

        stopped, dec_len = item_ints("stopped"), item_ints("lengths").astype(np.int64)
        if options.early_stop:
            reached_max = stopped != 1
            n_frames = np.where(reached_max, dec_len, dec_len + 1)
        else:
            n_frames = np.full(bsz, steps, np.int64)  # stop test done on the host, from the gate
        self._check_cancel(cancel)

        post = self.stages["postnet"].run(p.mel, n_frames, out=self._buf("post", p.mel.shape))
        ev.append(("postnet", ctx.record()))
        t_out = p.T_out
        audio_dev = None
        if options.vocoder == "waveglow":
            self._check_cancel(cancel)
            audio_dev = self._waveglow(post, n_frames, t_out, options.sigma, wg_seed, cancel)
            ev.append(("waveglow", ctx.record()))
            short = np.zeros(bsz, bool)
            if options.denoise > 0:
                self._check_cancel(cancel)
                audio_dev, short = self._denoise(audio_dev, n_frames, options.denoise)
                ev.append(("denoiser", ctx.record()))

        # results out: mel, gate, alignment (the GUI shows them) and the audio
        mel_h = np.empty((bsz, cfg.n_mel_channels, steps), np.float32)
        _copy_rows(ctx, mel_h.reshape(bsz * cfg.n_mel_channels, steps), post.ptr, 4 * t_out, bsz * cfg.n_mel_channels)
        gate_h = np.empty((bsz, steps), np.float32)
        _copy_rows(ctx, gate_h, p.gate.ptr, 4 * t_out, bsz)
        align_h = np.empty((bsz, steps, t_in), np.float32)
        _copy_rows(ctx, align_h.reshape(bsz, steps * t_in), p.align.ptr, 4 * t_out * t_in, bsz)

        if options.early_stop:
            stopped_early = ~reached_max
            out_len = dec_len
        else:  # NVIDIA's bookkeeping without the stop: lengths count the steps before the first firing
            from ..model.tacotron2 import sigmoid

            fired = sigmoid(gate_h) > np.float32(cfg.gate_threshold)
            any_fired = fired.any(axis=1)
            reached_max = ~any_fired
            out_len = np.where(any_fired, fired.argmax(axis=1), steps)
            stopped_early = np.zeros(bsz, bool)
        n_audio = np.where(stopped_early, out_len, n_frames)

        audio_h = None
        if audio_dev is not None:
            audio_h = np.empty((bsz, int(n_frames.max()) * HOP), np.float32)
            _copy_rows(ctx, audio_h, audio_dev.ptr, 4 * t_out * HOP, bsz)
        ev.append(("copies", ctx.record()))
        ctx.synchronize()

        timings: dict[str, float] = {}
        for (_, a), (name, b) in zip(ev, ev[1:]):
            timings[name] = timings.get(name, 0.0) + (b - a) * 1e-3
        timings = {k: timings[k] for k in ("encoder", "decoder", "postnet", "waveglow", "denoiser", "copies")
                   if k in timings}

        if audio_h is not None and options.denoise > 0 and short.any():
            for i in np.flatnonzero(short):  # too short for the GPU STFT's reflect padding
                t0 = time.perf_counter()
                audio_h[i, : n_frames[i] * HOP] = self._denoise_host(audio_h[i, : n_frames[i] * HOP], options.denoise)
                timings["denoiser"] = timings.get("denoiser", 0.0) + time.perf_counter() - t0

        results = []
        gl_rng = np.random.default_rng(seed) if options.vocoder == "griffin-lim" else None
        for i in range(bsz):
            n = int(n_frames[i])
            item_t = dict(timings)
            if audio_h is None:
                from ..model.griffin_lim import griffin_lim

                self._check_cancel(cancel)
                t0 = time.perf_counter()
                audio = griffin_lim(mel_h[i, :, :n], self.config.audio, rng=gl_rng, length=n * HOP)
                item_t["griffin_lim"] = time.perf_counter() - t0
            else:
                audio = audio_h[i]
            results.append(BackendResult(
                audio=np.ascontiguousarray(audio[: int(n_audio[i]) * HOP], np.float32),
                mel=np.ascontiguousarray(mel_h[i, :, :n]),
                alignment=np.ascontiguousarray(align_h[i, :n, : int(lengths[i])]),
                gate=np.ascontiguousarray(gate_h[i, :n]),
                reached_max_steps=bool(reached_max[i]),
                timings=item_t,
            ))
        return results

    # ------------------------------------------------------------------------------ stages
    def _decode(self, memory: DeviceArray, lengths: np.ndarray, max_steps: int, options, seed: int, cancel):
        """Replay the decoder's chunk graph until the device says done, one chunk ahead of the
        host: chunk i's counters land in pinned memory while chunk i + 1 runs, so the GPU never
        waits for the host's check (nor for `cancel`)."""
        from cuda.bindings import driver

        ctx, dec = self.ctx, self.stages["decoder"]
        bsz, t_in = memory.shape[0], memory.shape[1]
        n_chunks = -(-max_steps // CHUNK_STEPS)
        chunk = -(-max_steps // n_chunks)  # as even as possible: the last chunk wastes little
        thr = self.config.tacotron2.gate_threshold if options.early_stop else float(NEVER)
        p = dec.plan(bsz, t_in, max_steps, 0, True, thr, "chunk", 1, chunk)
        dec.prepare(p, memory, lengths, max_steps=max_steps, dropout=bool(options.prenet_dropout), seed=seed)
        if p.graph is None:
            p.build_graph()
        n_ints = p.ints.size
        if not self._slots or self._slots[0].array.size < n_ints:
            self._slots = [_Pinned(n_ints), _Pinned(n_ints)]

        def launch(i: int) -> None:
            p.graph.launch(ctx.stream)
            _check(driver.cuMemcpyDtoHAsync(self._slots[i % 2].ptr, p.ints.ptr, 4 * n_ints, ctx.stream.handle))
            self._slot_events[i % 2].record(ctx.stream)

        launched = 0
        for _ in range(min(2, n_chunks)):
            launch(launched)
            launched += 1
        i = 0
        while True:
            self._slot_events[i % 2].sync()
            ints = self._slots[i % 2].array[:n_ints].copy()
            if ints[1]:
                return p, ints
            self._check_cancel(cancel)
            if launched < n_chunks:
                launch(launched)
                launched += 1
            i += 1
            if i >= launched:
                raise RuntimeError(f"the decoder did not finish within {launched} chunks of {chunk} steps")

    def _waveglow(self, post: DeviceArray, n_frames: np.ndarray, t_out: int, sigma: float, seed: int, cancel):
        """WaveGlow over item groups of bounded size: one group runs while the host checks
        `cancel` after the previous one."""
        wg = self.stages["waveglow"]
        bsz = post.shape[0]
        audio = self._buf("audio", (bsz, t_out * HOP))
        groups = _groups(n_frames, WG_GROUP_FRAMES[self.precision])
        if len(groups) > 1:
            # WaveGlowGpu uploads (synchronously) the row offsets of a length tuple it has not seen;
            # doing that for every group now, while the GPU has only the postnet queued, keeps
            # those syncs from draining the queue between groups
            spf = HOP // self.config.waveglow.n_group
            for a, b in groups:
                wg._offsets(tuple(int(n) for n in n_frames[a:b]), spf)
        pending = None
        for g, (a, b) in enumerate(groups):
            wg.infer(_items(post, a, b - a), [int(n) for n in n_frames[a:b]], sigma=float(sigma),
                     seed=(seed + g) & 0xFFFFFFFFFFFFFFFF, out=_items(audio, a, b - a))
            done = self._group_events[g % 2]
            done.record(self.ctx.stream)
            if pending is not None:
                pending.sync()
                self._check_cancel(cancel)
            pending = done
        return audio

    def _denoise(self, audio: DeviceArray, n_frames: np.ndarray, strength: float):
        """GPU denoiser over runs of consecutive items long enough for its reflect padding
        (> filter_length / 2 samples); returns (denoised audio, items left for the host)."""
        dn = self.stages["denoiser"]
        out = self._buf("denoised", audio.shape)
        samples = n_frames * HOP
        short = samples <= dn.n // 2
        i, bsz = 0, len(n_frames)
        while i < bsz:
            if short[i]:
                i += 1
                continue
            j = i
            while j < bsz and not short[j]:
                j += 1
            dn.denoise(_items(audio, i, j - i), [int(s) for s in samples[i:j]], float(strength),
                       out=_items(out, i, j - i))
            i = j
        if short.any():  # raw audio for the host fallback
            for k in np.flatnonzero(short):
                _items(out, int(k), 1).copy_from_device(_items(audio, int(k), 1))
        return out, short

    def _denoise_host(self, audio: np.ndarray, strength: float) -> np.ndarray:
        """NVIDIA's denoiser on the CPU with this engine's bias (model/denoiser.py's arithmetic)."""
        from ..model.stft import STFT

        a = self.config.audio
        stft = STFT(a.filter_length, a.hop_length, a.win_length)
        magnitude, phase = stft.transform(audio[None])
        magnitude = np.maximum(magnitude - self._bias[None, :, None] * np.float32(strength), 0.0)
        return stft.inverse(magnitude, phase)[0, : audio.shape[0]].astype(np.float32)
