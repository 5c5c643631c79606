"""Backends turn batches of symbol ids into audio: the NumPy reference (CPU) or the GPU engine.

Both return the same `BackendResult` per item, so the API, the CLI and the GUI never care which
one ran. The GPU engine is imported lazily: the CPU path must work where cuda-python is absent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tts_desktop.cancel import check as check_cancel
from tts_desktop.model.config import VoiceConfig


@dataclass
class BackendResult:
    audio: np.ndarray
    mel: np.ndarray
    alignment: np.ndarray
    gate: np.ndarray
    reached_max_steps: bool
    timings: dict[str, float] = field(default_factory=dict)


def pad_ids(batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists with the pad symbol (id 0) into one (B, T_max) array."""
    lengths = np.array([len(ids) for ids in batch], np.int64)
    if (lengths == 0).any():
        raise ValueError("every item needs at least one symbol")
    out = np.zeros((len(batch), int(lengths.max())), np.int64)
    for i, ids in enumerate(batch):
        out[i, : len(ids)] = ids
    return out, lengths


class CpuBackend:
    """The NumPy reference pipeline: ground truth for the tests and the CPU fallback."""

    def __init__(self, config: VoiceConfig, tacotron2_weights, waveglow_weights, note: str = ""):
        from tts_desktop.model.denoiser import Denoiser
        from tts_desktop.model.tacotron2 import Tacotron2
        from tts_desktop.model.waveglow import WaveGlow

        self.config = config
        self.tacotron2 = Tacotron2(config.tacotron2, tacotron2_weights)
        self.waveglow = WaveGlow(config.waveglow, waveglow_weights)
        self._denoiser: Denoiser | None = None  # built on first use: it runs WaveGlow once
        self.device_name = "cpu"
        self.note = note

    @property
    def denoiser(self):
        if self._denoiser is None:
            from tts_desktop.model.denoiser import Denoiser

            a = self.config.audio
            self._denoiser = Denoiser(self.waveglow, n_mel_channels=self.config.waveglow.n_mel_channels,
                                      filter_length=a.filter_length,
                                      n_overlap=a.filter_length // a.hop_length, win_length=a.win_length)
        return self._denoiser

    def synthesize_ids(self, batch: list[list[int]], options, seed: int | None = None,
                       cancel: Callable[[], bool] | None = None) -> list[BackendResult]:
        """Synthesize a batch of id lists; each item's result equals synthesizing it alone.

        Frame counts follow NVIDIA's inference: the mel keeps the frame on which the stop token
        fired, and the audio is cut to the frames before it (mel_lengths * hop).
        """
        from tts_desktop.model.griffin_lim import griffin_lim

        rng = np.random.default_rng(seed)
        ids, lengths = pad_ids(batch)
        hop = self.config.audio.hop_length
        max_steps = options.max_decoder_steps or self.config.tacotron2.max_decoder_steps
        t = {}

        t0 = time.perf_counter()
        memory = self.tacotron2.encode(ids, lengths)
        t["encoder"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        dec = self.tacotron2.decode(memory, lengths, max_steps=max_steps, early_stop=options.early_stop,
                                    prenet_dropout=options.prenet_dropout, rng=rng, cancel=cancel)
        t["decoder"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        mel_post = self.tacotron2.postnet(dec.mel, dec.n_frames)
        t["postnet"] = time.perf_counter() - t0

        results = []
        for i in range(len(batch)):
            check_cancel(cancel)
            n = int(dec.n_frames[i])
            stopped = options.early_stop and not dec.reached_max[i]
            n_audio = int(dec.lengths[i]) if stopped else n
            mel_i = mel_post[i : i + 1, :, :n]
            timings = dict(t)
            t0 = time.perf_counter()
            if options.vocoder == "griffin-lim":
                audio = griffin_lim(mel_i[0], self.config.audio, rng=rng, length=n * hop)
                timings["griffin_lim"] = time.perf_counter() - t0
            else:
                audio = self.waveglow.infer(mel_i, sigma=options.sigma, rng=rng, cancel=cancel)
                timings["waveglow"] = time.perf_counter() - t0
                if options.denoise > 0:
                    t0 = time.perf_counter()
                    audio = self.denoiser(audio, strength=options.denoise)
                    timings["denoiser"] = time.perf_counter() - t0
                audio = audio[0]
            results.append(BackendResult(
                audio=np.asarray(audio[: n_audio * hop], np.float32),
                mel=mel_post[i, :, :n].astype(np.float32),
                alignment=dec.alignment[i, :n, : int(lengths[i])].astype(np.float32),
                gate=dec.gate[i, :n].astype(np.float32),
                reached_max_steps=bool(dec.reached_max[i]),
                timings=timings,
            ))
        return results


class BackendBuild:
    """`make_backend` in three steps, for a caller that keeps serving requests while a new backend
    is made (the GUI's worker builds one on a helper thread and swaps it in when it is ready):

        build = BackendBuild(device="auto", precision="fp16")      # owning thread: quick
        build.run(path, config, tacotron2_weights, waveglow_weights, progress)  # any thread: slow
        backend = build.finish()                                   # owning thread: quick

    Only `__init__` (the GPU's status and its context) and `finish` (weights to the GPU, stages,
    the denoiser's bias) touch the device, so a GPU backend's CUDA context is only ever used from
    the thread that owns the backend. `run` is what takes time and needs no device: building the
    NumPy reference, or packing and NVRTC-compiling the GPU engine (tens of seconds the first
    time; a cached engine is read and checked instead). Where the GPU cannot be used, 'auto' falls
    back to the NumPy reference at whichever step found out, with the reason in `note`; 'cuda'
    raises.
    """

    def __init__(self, device: str = "auto", precision: str = "fp16", tf32: bool = False) -> None:
        if tf32 and precision != "fp32":
            raise ValueError(f"TF32 applies to the FP32 engine only (precision 'fp32'), not {precision!r}")
        self.device, self.precision, self.tf32 = device, precision, bool(tf32)
        self._cpu_note = "CPU (NumPy reference)"
        self._ctx = None
        self._engine = None
        self._backend = None
        self._inputs: tuple | None = None
        if device == "cpu":
            return
        from tts_desktop.engine.runtime import GpuUnavailable, gpu_status

        ok, reason = gpu_status()
        if not ok:
            if device == "cuda":
                raise GpuUnavailable(reason)
            self._cpu_note = f"CPU (NumPy reference): no usable GPU: {reason}"
            return
        from tts_desktop.engine.pipeline import shared_context

        try:
            self._ctx = shared_context()
        except Exception as e:  # noqa: BLE001 - 'auto' still has the CPU
            self._fall_back(e)

    def run(self, path: Path | None, config: VoiceConfig, tacotron2_weights, waveglow_weights,
            progress: Callable[[float, str], None] | None = None) -> None:
        self._inputs = (path, config, tacotron2_weights, waveglow_weights)
        if self._ctx is None:
            self._backend = self._cpu_backend(progress)
            return
        from tts_desktop.engine.build import get_engine
        from tts_desktop.engine.pipeline import DEFAULT_MAX_BATCH

        try:
            self._engine = get_engine(path, config, tacotron2_weights, waveglow_weights,
                                      gpu_name=self._ctx.name, arch=self._ctx.arch,
                                      precision=self.precision, max_batch=DEFAULT_MAX_BATCH,
                                      progress=progress, tf32=self.tf32)
        except Exception as e:  # e.g. dimensions the kernels do not support: the CPU still can
            self._fall_back(e)
            self._backend = self._cpu_backend(progress)

    def _cpu_backend(self, progress) -> CpuBackend:
        """The CPU backend with its denoiser measured here, on the loading thread: that runs
        WaveGlow once (1.2 s for the demo voice on two cores), which the first Speak would pay."""
        _, config, tacotron2_weights, waveglow_weights = self._inputs
        backend = CpuBackend(config, tacotron2_weights, waveglow_weights, note=self._cpu_note)
        if progress:
            progress(0.5, "measuring WaveGlow's bias for the denoiser")
        backend.denoiser  # noqa: B018 - built on first use
        return backend

    def finish(self):
        if self._inputs is None:
            raise RuntimeError("BackendBuild.finish() before run()")
        if self._backend is not None:
            return self._backend
        from tts_desktop.engine.pipeline import GpuBackend

        path, config, tacotron2_weights, waveglow_weights = self._inputs
        try:
            return GpuBackend(path, config, tacotron2_weights, waveglow_weights,
                              precision=self.precision, engine=self._engine, tf32=self.tf32)
        except Exception as e:  # noqa: BLE001
            self._fall_back(e)
            return CpuBackend(config, tacotron2_weights, waveglow_weights, note=self._cpu_note)

    def _fall_back(self, e: Exception) -> None:
        """'cuda' re-raises; 'auto' goes on with the NumPy reference, saying why."""
        if self.device == "cuda":
            raise e
        from tts_desktop.engine.compile import headline

        self._ctx = None
        self._cpu_note = f"CPU (NumPy reference): the GPU engine cannot run this voice: {headline(e)}"


def make_backend(path: Path, config: VoiceConfig, tacotron2_weights, waveglow_weights, *,
                 device: str = "auto", precision: str = "fp16",
                 progress: Callable[[float, str], None] | None = None, tf32: bool = False):
    """The GPU engine when asked for (or 'auto' and usable), else the NumPy reference.

    tf32: the FP32 GPU engine with WaveGlow's GEMMs on TF32 tensor cores (precision 'fp32' only);
    the NumPy reference has no such mode and ignores it (it is stricter, never less strict)."""
    build = BackendBuild(device, precision, tf32=tf32)
    build.run(path, config, tacotron2_weights, waveglow_weights, progress)
    return build.finish()
