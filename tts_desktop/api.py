"""The small public API: load a voice, synthesize text.

    voice = Voice.load("resources/voices/demo")          # or a voice name, see voices.find_voice
    result = voice.synthesize("Hello there. How are you?")
    result.audio          # float32 at voice.sample_rate, sentences joined with short pauses
    result.sentences[0].mel, .alignment, .gate, .timings

Long text is split into sentences and synthesized one by one (`synthesize_stream` yields each
sentence as soon as it is ready, so playback can start while the rest is computed).
Work runs on a backend: the NumPy reference on the CPU, or the GPU engine when asked for and
usable. Everything a caller sees is NumPy arrays and floats; no CUDA object leaks out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tts_desktop.cancel import SynthesisCancelled  # noqa: F401  (part of the public API)
from tts_desktop.model.config import VoiceConfig
from tts_desktop.text import TextError, normalize, split_sentences, text_to_sequence

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp16", "fp32")
VOCODERS = ("waveglow", "griffin-lim")
TF32_LABEL = "fp32 (TF32 tensor-core GEMMs)"


def precision_label(precision: str, tf32: bool = False) -> str:
    """How a result's precision is named wherever it is reported (bench output, JSON): 'fp16',
    'fp32' (strict), or TF32_LABEL, so a TF32 number is never passed off as strict FP32."""
    if tf32:
        if precision != "fp32":
            raise ValueError(f"TF32 applies to the FP32 engine only (precision 'fp32'), not {precision!r}")
        return TF32_LABEL
    return precision


@dataclass(frozen=True)
class SynthesisOptions:
    sigma: float = 0.6                   # WaveGlow noise scale (NVIDIA's inference default)
    denoise: float = 0.01                # denoiser strength; 0 switches it off
    seed: int | None = None              # prenet dropout and WaveGlow noise; None = fresh
    prenet_dropout: bool = True          # NVIDIA keeps dropout on at inference; off = deterministic
    max_decoder_steps: int | None = None # None: the voice's config (2000 for NVIDIA's)
    early_stop: bool = True              # False: always decode max_decoder_steps frames
    vocoder: str = "waveglow"            # or "griffin-lim"
    sentence_pause: float = 0.2          # seconds of silence between sentences

    def __post_init__(self):
        if self.vocoder not in VOCODERS:
            raise ValueError(f"unknown vocoder {self.vocoder!r}: choose one of {', '.join(VOCODERS)}")
        if not (0.0 <= self.sigma <= 2.0):
            raise ValueError(f"sigma must be between 0 and 2, got {self.sigma}")
        if not (0.0 <= self.denoise <= 1.0):
            raise ValueError(f"denoiser strength must be between 0 and 1, got {self.denoise}")
        if self.max_decoder_steps is not None and self.max_decoder_steps < 1:
            raise ValueError("max decoder steps must be at least 1")
        if self.sentence_pause < 0:
            raise ValueError("sentence pause cannot be negative")


@dataclass
class SentenceResult:
    """One synthesized sentence and everything the GUI and `--dump` show about it."""

    index: int
    text: str                 # the sentence as the user wrote it
    normalized: str           # what the model read (cleaned text)
    ids: list[int]
    audio: np.ndarray         # float32, after the denoiser, before any PCM scaling
    mel: np.ndarray           # (80, T) after the postnet
    alignment: np.ndarray     # (T, T_in)
    gate: np.ndarray          # (T,) logits
    reached_max_steps: bool   # the stop token never fired: the decode was cut at the cap
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def frames(self) -> int:
        return int(self.mel.shape[1])


@dataclass
class Synthesis:
    text: str
    sample_rate: int
    sentences: list[SentenceResult]
    audio: np.ndarray          # all sentences joined with pauses
    latency: float             # seconds from text in to audio in host memory
    device: str                # "cpu" or the GPU's name

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor as NVIDIA reports it: seconds of audio per second of compute."""
        return self.audio_seconds / self.latency if self.latency > 0 else float("inf")

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sentences)

    @property
    def timings(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for s in self.sentences:
            for k, v in s.timings.items():
                total[k] = total.get(k, 0.0) + v
        return total


CancelCheck = Callable[[], bool] | threading.Event | None


def _cancel_fn(cancel: CancelCheck) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


class Voice:
    """A loaded voice: its config plus a backend that turns symbol ids into audio."""

    def __init__(self, path: Path, config: VoiceConfig, backend):
        self.path = path
        self.config = config
        self.backend = backend

    @classmethod
    def load(cls, voice: str | Path | None = None, device: str = "auto", precision: str = "fp16",
             progress: Callable[[float, str], None] | None = None, tf32: bool = False) -> "Voice":
        """Load a voice folder (or a voice by name) onto the CPU reference or the GPU engine.

        device="auto" takes the GPU when one is usable and falls back to the CPU; the reason for a
        fallback is in `voice.device_note`. device="cuda" raises `GpuUnavailable` instead.
        precision="fp32" is strict FP32; with tf32=True (fp32 only, an Ampere or newer GPU) the
        FP32 engine runs WaveGlow's GEMMs on TF32 tensor cores: faster, with FP16-like rounding of
        the GEMM operands (the CPU reference ignores it).
        `VoiceLoad` does the same in steps, for a caller that keeps serving meanwhile.
        """
        loading = VoiceLoad(voice, device=device, precision=precision, tf32=tf32)
        loading.run(progress)
        return loading.finish()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sampling_rate

    @property
    def device(self) -> str:
        return self.backend.device_name

    @property
    def device_note(self) -> str:
        return self.backend.note

    def synthesize_stream(self, text: str, options: SynthesisOptions | None = None,
                          cancel: CancelCheck = None) -> Iterator[SentenceResult]:
        """Yield one SentenceResult per sentence, in order, each as soon as it is ready."""
        options = options or SynthesisOptions()
        is_cancelled = _cancel_fn(cancel)
        sentences = split_sentences(text)
        if not sentences:
            raise TextError("there is nothing to say: the text is empty")
        rng = np.random.default_rng(options.seed)
        for index, sentence in enumerate(sentences):
            if is_cancelled():
                raise SynthesisCancelled()
            t0 = time.perf_counter()
            ids = text_to_sequence(sentence)
            t_text = time.perf_counter() - t0
            # A sentence-local generator derived from the caller's seed keeps each sentence's
            # result independent of how many random numbers the previous sentence consumed.
            sentence_seed = int(rng.integers(0, 2**63 - 1))
            out = self.backend.synthesize_ids([ids], options, seed=sentence_seed,
                                              cancel=is_cancelled)[0]
            out.timings = {"text": t_text, **out.timings}
            yield SentenceResult(index=index, text=sentence, normalized=normalize(sentence),
                                 ids=ids, **out.__dict__)

    def synthesize(self, text: str, options: SynthesisOptions | None = None,
                   cancel: CancelCheck = None) -> Synthesis:
        """Synthesize the whole text; sentences are joined with `options.sentence_pause` of silence."""
        options = options or SynthesisOptions()
        t0 = time.perf_counter()
        sentences = list(self.synthesize_stream(text, options, cancel))
        audio = join_sentences([s.audio for s in sentences], self.sample_rate, options.sentence_pause)
        latency = time.perf_counter() - t0
        return Synthesis(text=text, sample_rate=self.sample_rate, sentences=sentences, audio=audio,
                         latency=latency, device=self.device)


class VoiceLoad:
    """`Voice.load` in three steps, so that the slow part can run on another thread while the
    thread that owns the voice in use goes on serving with it (the GUI's worker does this):

        loading = VoiceLoad(voice, device, precision)   # owning thread: quick (finds the folder;
                                                        # the GPU's status and context)
        loading.run(progress)                           # any thread: the weights and the slow part
                                                        # of the backend (backends.BackendBuild)
        voice = loading.finish()                        # owning thread: quick (the device part)
    """

    def __init__(self, voice: str | Path | None = None, device: str = "auto", precision: str = "fp16",
                 tf32: bool = False):
        from tts_desktop.backends import BackendBuild
        from tts_desktop.voices import find_voice

        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        precision_label(precision, tf32)  # TF32 with fp16 is refused before anything is loaded
        self.path = find_voice(voice)
        self._build = BackendBuild(device, precision, tf32=tf32)
        self._config: VoiceConfig | None = None

    def run(self, progress: Callable[[float, str], None] | None = None) -> None:
        from tts_desktop.model.voice_files import load_voice

        config, tacotron2_weights, waveglow_weights = load_voice(self.path)
        self._build.run(self.path, config, tacotron2_weights, waveglow_weights, progress)
        self._config = config

    def finish(self) -> Voice:
        if self._config is None:
            raise RuntimeError("VoiceLoad.finish() before run()")
        return Voice(self.path, self._config, self._build.finish())


def join_sentences(pieces: list[np.ndarray], sample_rate: int, pause: float) -> np.ndarray:
    if not pieces:
        return np.zeros(0, np.float32)
    gap = np.zeros(int(round(pause * sample_rate)), np.float32)
    out: list[np.ndarray] = []
    for i, p in enumerate(pieces):
        if i:
            out.append(gap)
        out.append(np.asarray(p, np.float32))
    return np.concatenate(out)
