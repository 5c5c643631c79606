"""`tts-desktop bench`: text in → audio in host memory, timed, reported like NVIDIA's tables.

The statistics block copies the reference's (trtis_cpp benchmark client): avg latency, std,
latency intervals 50/90/95/99 %, average mels generated, average audio seconds, real-time factor.
Per-stage times come from the backend's own timers. `--compare-pytorch PATH` runs NVIDIA's
PyTorch implementation from a DeepLearningExamples checkout on the same weights and input, in the
same process, and prints our numbers as ratios of theirs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tts_desktop.assets import resources_dir
from tts_desktop.model.config import AudioConfig

DEFAULT_PHRASE = resources_dir() / "phrases" / "benchmark_128.txt"


@dataclass
class BenchResult:
    label: str
    latencies: list[float]            # seconds, one per timed run
    mels: list[int]                   # frames generated per item, one per run (first item)
    audio_seconds: list[float]        # per item
    batch: int
    stages: dict[str, list[float]] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    precision: str | None = None      # api.precision_label: "fp16", "fp32" or "fp32 (TF32 tensor-core GEMMs)"

    def stats(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        n = len(lat)

        def interval(q: float) -> float:
            # NVIDIA's definition: the largest latency among the fastest q of the runs.
            return max(lat[: max(1, int(n * q))])

        avg = float(np.mean(lat))
        audio = float(np.mean(self.audio_seconds))
        return {
            "avg_latency_s": avg,
            "latency_std_s": float(np.std(lat)),
            "latency_p50_s": interval(0.50),
            "latency_p90_s": interval(0.90),
            "latency_p95_s": interval(0.95),
            "latency_p99_s": interval(0.99),
            "avg_mels": float(np.mean(self.mels)),
            "avg_audio_s": audio,
            "rtf": audio / avg,
            "aggregate_audio_s_per_s": audio * self.batch / avg,
        }

    def stage_means(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.stages.items()}


def format_block(r: BenchResult) -> str:
    s = r.stats()
    lines = [
        f"[{r.label}]",
        *([f"precision = {r.precision}"] if r.precision else []),
        f"Performed {len(r.latencies)} runs.",
        f"batch size = {r.batch}",
        f"avg latency (s) = {s['avg_latency_s']:.6f}",
        f"latency std (s) = {s['latency_std_s']:.6f}",
        f"latency interval 50% (s) = {s['latency_p50_s']:.6f}",
        f"latency interval 90% (s) = {s['latency_p90_s']:.6f}",
        f"latency interval 95% (s) = {s['latency_p95_s']:.6f}",
        f"latency interval 99% (s) = {s['latency_p99_s']:.6f}",
        f"average mels generated = {s['avg_mels']:.0f}",
        f"average audio generated (s) = {s['avg_audio_s']:.5f}",
        f"average real-time factor = {s['rtf']:.3f}",
    ]
    if r.batch > 1:
        lines.append(f"aggregate audio seconds per second = {s['aggregate_audio_s_per_s']:.2f}")
    stages = r.stage_means()
    if stages:
        lines.append("per-stage (ms): " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in stages.items()))
        if "decoder" in stages and s["avg_mels"] > 0:
            lines.append(f"decoder per step (us) = {stages['decoder'] / s['avg_mels'] * 1e6:.1f}")
    if r.peak_memory_bytes is not None:
        lines.append(f"peak GPU memory (MiB) = {r.peak_memory_bytes / 2**20:.1f}")
    return "\n".join(lines)


def format_ratios(ours: BenchResult, theirs: BenchResult) -> str:
    a, b = ours.stats(), theirs.stats()
    rows = [f"[{ours.label} vs {theirs.label}]",
            f"speed-up (avg latency) = {b['avg_latency_s'] / a['avg_latency_s']:.2f}x",
            f"speed-up (p99 latency) = {b['latency_p99_s'] / a['latency_p99_s']:.2f}x",
            f"RTF {a['rtf']:.1f} vs {b['rtf']:.1f}"]
    sa, sb = ours.stage_means(), theirs.stage_means()
    for k in sa:
        if k in sb and sa[k] > 0:
            rows.append(f"  {k}: {sa[k] * 1e3:.3f} ms vs {sb[k] * 1e3:.3f} ms ({sb[k] / sa[k]:.1f}x)")
    return "\n".join(rows)


def time_backend(backend, text: str, batch: int, options, runs: int, warmup: int,
                 label: str, sample_rate: int) -> BenchResult:
    """Time `runs` calls, text in to audio in host memory, on `batch` copies of the same text."""
    from tts_desktop.text import text_to_sequence

    result = BenchResult(label=label, latencies=[], mels=[], audio_seconds=[], batch=batch)
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        ids = text_to_sequence(text)
        out = backend.synthesize_ids([ids] * batch, options, seed=i)
        latency = time.perf_counter() - t0
        if i < warmup:
            continue
        result.latencies.append(latency)
        result.mels.append(out[0].mel.shape[1])
        result.audio_seconds.append(len(out[0].audio) / sample_rate)
        for k, v in out[0].timings.items():
            result.stages.setdefault(k, []).append(v)
    peak = getattr(backend, "peak_memory_bytes", None)
    result.peak_memory_bytes = peak() if callable(peak) else peak
    return result


def run_bench(args) -> int:
    from tts_desktop.api import SynthesisOptions, precision_label
    from tts_desktop.backends import make_backend
    from tts_desktop.model.random_voice import random_voice
    from tts_desktop.model.voice_files import load_voice
    from tts_desktop.text import text_to_sequence
    from tts_desktop.text.sentences import split_sentences
    from tts_desktop.voices import find_voice

    raw = args.text if args.text else DEFAULT_PHRASE.read_text(encoding="utf-8").strip()
    # Read as the app reads text: its front end ends every sentence with . ! or ?. NVIDIA's phrase
    # has no final period, and a voice trained on punctuated sentences (the demo voice) then never
    # fires its stop token: 2,000 frames of babble where the app speaks the same phrase in ~575.
    sentences = split_sentences(raw)
    if not sentences:
        raise ValueError("there is nothing to say: the benchmark text is empty")
    text = " ".join(sentences)
    ids = text_to_sequence(text)
    if args.voice:
        path = find_voice(args.voice)
        config, tw, ww = load_voice(path)
    else:
        path = None
        config, tw, ww = random_voice(seed=0)
    tf32 = bool(getattr(args, "tf32", False))
    if tf32 and args.device != "cuda":
        raise ValueError("--tf32 applies to the GPU engine only (--device cuda)")
    backend = make_backend(path, config, tw, ww, device=args.device, precision=args.precision, tf32=tf32)
    # the CPU reference is float32 whatever --precision says; TF32 is named wherever a number is shown
    precision = precision_label(args.precision, tf32) if args.device == "cuda" else "fp32"
    options = SynthesisOptions(
        sigma=0.6, denoise=0.01, prenet_dropout=True,
        max_decoder_steps=args.frames or config.tacotron2.max_decoder_steps,
        early_stop=args.frames is None)
    label = f"tts-desktop {backend.device_name} {precision}"
    audio_cfg: AudioConfig = config.audio
    ours = time_backend(backend, text, args.batch, options, args.runs, args.warmup, label,
                        audio_cfg.sampling_rate)
    ours.precision = precision
    print(format_block(ours))
    # the engine's environment switches (TTS_DESKTOP_LSTM_TC=0, TTS_DESKTOP_DECODER_PDL=0...) change
    # what ran: say so, so that a result is never mistaken for the default engine's
    settings = {k: v for k, v in sorted(os.environ.items()) if k.startswith("TTS_DESKTOP_")}
    if settings:
        print("settings = " + " ".join(f"{k}={v}" for k, v in settings.items()))
    record = {
        "command": "tts-desktop " + " ".join(sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": backend.device_name,
        "precision": precision,  # "fp32 (TF32 tensor-core GEMMs)" for --tf32: never plain "fp32"
        "tf32": tf32,
        "host": platform.node(),
        "python": platform.python_version(),
        "versions": versions(),
        "voice": str(path) if path else "random weights at NVIDIA's full dimensions",
        "text": text,
        "input_chars": len(text),
        "frames_forced": args.frames,
        "settings": settings,
        "ours": {**ours.stats(), "stages_s": ours.stage_means(), "peak_memory_bytes": ours.peak_memory_bytes,
                 "latencies_s": ours.latencies},
    }
    if args.compare_pytorch:
        from tts_desktop.bench_pytorch import PyTorchReference

        ref = PyTorchReference(Path(args.compare_pytorch), config, tw, ww, precision=args.precision,
                               device=args.device)
        theirs = ref.time(ids, args.batch, options, args.runs, args.warmup)
        print()
        print(format_block(theirs))
        print()
        print(format_ratios(ours, theirs))
        record["pytorch"] = {**theirs.stats(), "stages_s": theirs.stage_means(),
                             "latencies_s": theirs.latencies}
    save_dir = Path(args.save)
    save_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    prec = (args.precision if args.device == "cuda" else "fp32") + ("-tf32" if tf32 else "")
    name = f"{stamp}-{backend.device_name.replace(' ', '_')}-{prec}-b{args.batch}.json"
    from tts_desktop.atomic import atomic_write_bytes

    atomic_write_bytes(save_dir / name, json.dumps(record, indent=1).encode())
    print(f"\nsaved {save_dir / name}")
    return 0


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("numpy", "cuda-core", "cuda-bindings", "nvmath-python", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
