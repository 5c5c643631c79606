"""WaveGlow training throughput, and where its time goes: the measurement to take before changing
how WaveGlow trains.

Why: the demo WaveGlow (128 channels, 8 flows) trains at ~200 segments/s on the H100 in bf16 at
batch 48, about 23 TFLOP/s of its ~113 GFLOP per 8000-sample segment (forward + backward), a few
percent of what the GPU can do, and after ~9,000 steps its samples are not yet speech. This runs
the training step as train.py does (same model, loss, data, optimizer, clipping) and prints
seconds per step, segments per second, the host's share (building the batch), peak memory and,
with --profile N, the N operators that take the most device time.

    python -m tts_desktop.train.speed --corpus /tmp/corpus [--batch-size 48] [--steps 20]
        [--amp bf16] [--graphs] [--fused] [--compile] [--profile 15] [--model-config JSON]

--graphs replays forward + backward from a CUDA graph as train.py does (graphed_waveglow.py);
--fused uses fused Adam, train.py's default on a GPU. --compile runs the model's forward through torch.compile (fusing WaveGlow's elementwise work);
its compile time is reported apart, as the warm-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .graphed_waveglow import GraphedWaveGlowStep
from .train import (AMP_DTYPES, TrainConfig, WaveGlowData, build_model, compute_loss, make_optimizer, pick_device,
                    precision_and_graphs, set_backend_flags, to_device, update_weights)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(cfg: TrainConfig, steps: int = 20, warmup: int = 3, compile: bool = False,
            profile_rows: int = 0, graphs: bool = False, fused: bool = False) -> dict:
    """Time `steps` WaveGlow training steps after `warmup` untimed ones; a dict of the results
    (with 'profile', a table, when profile_rows > 0). Precision and backend flags are train.py's
    for the config; graphs: train.py's GraphedWaveGlowStep (captured on a GPU, its eager split
    path elsewhere); fused: fused Adam."""
    cfg = cfg.resolved()
    if cfg.model != "waveglow":
        raise ValueError("speed.py measures WaveGlow (Tacotron2's step: python -m tts_desktop.train.graphed)")
    device = pick_device(cfg)
    amp, _ = precision_and_graphs(dataclasses.replace(cfg, graphs="off"), device)  # graphs: the argument
    amp_dtype = AMP_DTYPES.get(amp)
    set_backend_flags(cfg, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device).train()
    forward = torch.compile(model) if compile else model
    optimizer = make_optimizer(model, cfg, device, fused)
    step_fn = GraphedWaveGlowStep(model, cfg.batch_size, cfg.segment_length, cfg.sigma, amp_dtype) if graphs else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    data = WaveGlowData(Path(cfg.corpus), "train", cfg.segment_length, dither=cfg.dither)
    rng = np.random.default_rng(cfg.seed)
    host_seconds = [0.0]

    def step() -> float:
        t0 = time.perf_counter()
        batch = data.batch(rng.integers(0, len(data), cfg.batch_size).tolist(), rng)
        host_seconds[0] += time.perf_counter() - t0
        batch = to_device(batch, device)
        if step_fn is not None:  # train.py's graphed path: forward + backward replayed
            losses = step_fn.step(batch)
        else:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                losses, _ = compute_loss(forward, cfg, batch)
        update_weights(losses["loss"], model, optimizer, scaler, cfg, backward=step_fn is None)
        return float(losses["loss"].detach())  # a sync per step, as train.py's logging does

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warmup_seconds = time.perf_counter() - t0
    host_seconds[0] = 0.0
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(steps):
        loss = step()
    _sync(device)
    seconds = (time.perf_counter() - t0) / steps
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "amp": amp, "compile": compile, "graphs": graphs, "fused_adam": fused,
        "capture_error": step_fn.capture_error if step_fn is not None else None, "batch_size": cfg.batch_size,
        "segment_length": cfg.segment_length, "model_config": model.nvidia_config(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "warmup_seconds": round(warmup_seconds, 2), "seconds_per_step": round(seconds, 4),
        "segments_per_second": round(cfg.batch_size / seconds, 1),
        "host_batch_share": round(host_seconds[0] / steps / seconds, 3), "last_loss": round(loss, 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }
    if profile_rows > 0:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
            _sync(device)
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        result["profile"] = prof.key_averages().table(sort_by=sort, row_limit=profile_rows)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts_desktop.train.speed", description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True, help="folder written by tts_desktop.train.corpus")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, dest="learning_rate")
    p.add_argument("--segment-length", type=int, default=TrainConfig.segment_length)
    p.add_argument("--model-config", type=json.loads, default={})
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the model's forward")
    p.add_argument("--graphs", action="store_true", help="train.py's CUDA-graph step (graphed_waveglow.py)")
    p.add_argument("--fused", action="store_true", help="fused Adam (one kernel for all parameters)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print the N operators that take longest")
    a = p.parse_args(argv)
    cfg = TrainConfig("waveglow", a.corpus, out="", batch_size=a.batch_size, learning_rate=a.learning_rate,
                      segment_length=a.segment_length, model_config=a.model_config, amp=a.amp, device=a.device)
    result = measure(cfg, a.steps, a.warmup, a.compile, a.profile, a.graphs, a.fused)
    table = result.pop("profile", None)
    print(json.dumps(result))
    if table:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
