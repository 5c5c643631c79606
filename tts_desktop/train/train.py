"""Train Tacotron2 or WaveGlow on a corpus from `tts_desktop.train.corpus`, in time-boxed pieces.

    python -m tts_desktop.train.train tacotron2 --corpus corpus --out runs/tacotron2 --minutes 22
    python -m tts_desktop.train.train waveglow  --corpus corpus --out runs/waveglow  --minutes 22

A run stops by itself before `--minutes` are up (it keeps back the time of one more step plus
the time a checkpoint takes), saves `OUT/checkpoint_{Tacotron2|WaveGlow}_last.pt`, and writes the
FP16 shards of its weights to `OUT/export/` (≤ 15 MiB each: what a transfer can carry back, see
export.py). A checkpoint is also saved every `--checkpoint-minutes`, so a killed run loses little.
Running the same command again resumes from the last checkpoint in OUT (weights, Adam state,
step, epoch, elapsed time); `--init-from DIR` instead starts from exported shards (weights
only), which is how training continues on a fresh machine.

The checkpoint has the layout of NVIDIA's train.py (`state_dict`, `config` = the model's
kwargs, `optimizer`, `scaler`, `epoch`, plus `iteration`, `train_config` and `elapsed_seconds`),
so `tts_desktop.model.importer` reads it like an NGC checkpoint.

Hyperparameters are NVIDIA's for one GPU (their DGX A100 1-GPU scripts): Tacotron2 Adam lr 1e-3,
weight decay 1e-6, gradient clipping at norm 1.0; WaveGlow Adam, no weight decay, clipping at
65504 (i.e. only against overflow), 8000-sample segments, sigma 1.0. Changed after measuring on an
H100 (TrainConfig.resolved says why): Tacotron2's decoder replayed from CUDA graphs in FP32 + TF32
(graphed.py; NVIDIA: eager FP16 AMP) at NVIDIA's batch 128; WaveGlow batch 48 at lr 2e-4 in
bf16 (NVIDIA: 10 at 1e-4 in FP16 AMP), its forward + backward replayed from one CUDA graph
(graphed_waveglow.py); fused Adam on a GPU. NVIDIA anneals the learning rate only after 500 epochs,
far beyond these runs, so it is constant here. The WaveGlow is smaller than NVIDIA's
(DEMO_WAVEGLOW below).

SIGTERM or SIGUSR1 ends a run early the ordinary way: checkpoint, validation, export.

Log (OUT/log/): train.jsonl, one JSON object per logged step (step, epoch, losses, grad norm, lr,
wall-clock seconds, items/s) and per validation (val losses), and for Tacotron2 an alignment PNG
of the first validation utterance at every checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tts_desktop.model.config import Tacotron2Config, WaveGlowConfig
from tts_desktop.text import text_to_sequence
from tts_desktop.train import export, plots
from tts_desktop.train.corpus import read_manifest, read_mel, utterance_files
from tts_desktop.train.graphed import GraphedTacotron2Step
from tts_desktop.train.graphed_waveglow import GraphedWaveGlowStep
from tts_desktop.train.losses import tacotron2_loss, waveglow_loss
from tts_desktop.train.models import Tacotron2, WaveGlow, load_folded_state_dict

CHECKPOINT_NAMES = {"tacotron2": "checkpoint_Tacotron2_last.pt", "waveglow": "checkpoint_WaveGlow_last.pt"}
SILENCE_LOG_MEL = math.log(1e-5)  # the mel front-end's floor: what silence looks like
# The demo WaveGlow: NVIDIA's architecture, narrower (128 channels, not 512) and with 8 flows,
# not 12: the FP16 voice is then 56 + 51 MB (under the 120 MB), and the WaveGlow's
# shards (48 MiB) plus what a run needs besides still fit one 64 MiB transfer to a fresh machine,
# so its training can go on in a later session.
MAX_BAD_STEPS = 20  # non-finite losses in a row before a run gives up
DEMO_WAVEGLOW = {"wn_n_channels": 128, "n_flows": 8}


@dataclass
class TrainConfig:
    model: str  # "tacotron2" or "waveglow"
    corpus: str
    out: str
    minutes: float = 20.0
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)
    learning_rate: float | None = None  # None: NVIDIA's for the model
    batch_size: int | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    segment_length: int = 8000  # WaveGlow: audio samples per training item
    # WaveGlow: standard deviation of Gaussian noise added to the training audio (-80 dBFS). espeak-ng
    # writes digital silence (13 % of its samples are exactly 0), where a flow's likelihood has no
    # bound: the step-8,956 model spent itself there (NLL -8.4 per silent sample, -4.5 per voiced
    # one, log s 14 against 6). LJSpeech's recordings have a noise floor, so NVIDIA needs none.
    dither: float = 1e-4
    sigma: float = 1.0  # WaveGlow: the prior's standard deviation in the loss
    model_config: dict = field(default_factory=dict)  # overrides of Tacotron2Config / WaveGlowConfig
    amp: str = "auto"  # "fp16", "bf16", "off"; auto = fp16 (NVIDIA's AMP) on a GPU, off on the CPU
    # Tacotron2 on a GPU: decoder + postnet + loss + backward replayed from CUDA graphs (graphed.py),
    # in FP32 with TF32 products; "auto" = on for Tacotron2 on CUDA when amp is auto or off
    graphs: str = "auto"
    # Tacotron2 graphs: "each" captured length warms up eagerly first, or only the "first" one
    # (graphed.GraphedTacotron2Step.warmup_each): "each" ran batch 128 out of memory (74 GiB),
    # "first" held 53 GiB with WaveGlow beside it (both measured on an H100, docs/training.md)
    graph_warmup: str = "first"
    device: str = "auto"
    init_from: str | None = None  # folder with exported shards to start from (weights only)
    # after --init-from, Adam starts with empty moments, and its first updates are full
    # learning-rate steps however small the gradients: ramp the rate up over this many steps
    restart_warmup: int = 200
    # (first step, last step, final rate): from the first step on, the rate falls geometrically
    # to the final one, reached at the last step and kept after it. NVIDIA's rate is constant
    # for 500 epochs; a piece near the end of the training budget can anneal instead.
    lr_decay: tuple[int, int, float] | None = None
    seed: int = 1234
    log_every: int = 20
    checkpoint_minutes: float = 5.0
    val_items: int = 64  # validation utterances (Tacotron2) or segments (WaveGlow) per check

    def resolved(self) -> "TrainConfig":
        """The defaults filled in for the model: NVIDIA's, but for WaveGlow's batch size and
        learning rate, changed after measuring them on an H100 (see docs/training.md, "What was
        measured"): batch 48 at lr 2e-4, not 10 at 1e-4 (NVIDIA's 8-GPU runs take 8 x 10 per step;
        at batch 10 the GPU idles on launches, and FP16 AMP went NaN). Tacotron2 at NVIDIA's
        batch 128: replayed from CUDA graphs, it ran out of the H100's 80 GB twice in session 4
        while each new length bucket was warmed up eagerly (74 GiB: the graphs' shared pool plus
        that warm-up); with graph_warmup "first" it held 53 GiB, steady, for 20 minutes beside
        WaveGlow in session 5 (184 utterances/s, against 140-150 at batch 64)."""
        nvidia = {"tacotron2": dict(learning_rate=1e-3, batch_size=128, weight_decay=1e-6, grad_clip=1.0),
                  "waveglow": dict(learning_rate=2e-4, batch_size=48, weight_decay=0.0, grad_clip=65504.0)}
        if self.model not in nvidia:
            raise ValueError(f"model must be tacotron2 or waveglow, not {self.model!r}")
        if self.lr_decay is not None:
            first, last, final = self.lr_decay
            if not (0 <= first < last and final > 0):
                raise ValueError(f"lr_decay must be (first step, later last step, final rate > 0), not {self.lr_decay!r}")
        if self.graph_warmup not in ("each", "first"):
            raise ValueError(f"graph_warmup must be 'each' or 'first', not {self.graph_warmup!r}")
        values = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in nvidia[self.model].items()}
        model_config = dict(DEMO_WAVEGLOW if self.model == "waveglow" else {}, **self.model_config)
        return dataclasses.replace(self, model_config=model_config, **values)


def learning_rate_at(cfg: TrainConfig, step: int, warmup: tuple[int, int] = (0, 0)) -> float:
    """The rate for the update that takes the model from `step` to step + 1: cfg.lr_decay's
    geometric fall (if any), times the linear ramp over `warmup` = (first step, steps) that
    follows --init-from (Adam's moments start empty there)."""
    rate = cfg.learning_rate
    if cfg.lr_decay is not None:
        first, last, final = cfg.lr_decay
        progress = min(max((step - first) / (last - first), 0.0), 1.0)
        rate = rate * (final / rate) ** progress
    if warmup[1] and step < warmup[0] + warmup[1]:
        rate *= (step - warmup[0] + 1) / warmup[1]
    return rate


# ---------------------------------------------------------------------------------------------
# data: the whole corpus is held in memory (about 6 GB for all of LJSpeech's transcripts)


class TacotronData:
    def __init__(self, corpus: Path, split: str, limit: int | None = None):
        records = read_manifest(corpus, split)[:limit]
        self.ids = [r["id"] for r in records]
        self.texts = [np.asarray(text_to_sequence(r["text"]), np.int64) for r in records]
        self.mels = [read_mel(corpus, r["id"]) for r in records]
        self.lengths = np.array([m.shape[1] for m in self.mels])

    def __len__(self):
        return len(self.mels)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """Zero-padded batch; gate target 1 from each utterance's last frame on (NVIDIA's)."""
        n_mel = self.mels[0].shape[0]
        t_in = max(len(self.texts[i]) for i in indices)
        t_out = max(self.mels[i].shape[1] for i in indices)
        text = np.zeros((len(indices), t_in), np.int64)
        mel = np.zeros((len(indices), n_mel, t_out), np.float32)
        gate = np.zeros((len(indices), t_out), np.float32)
        for b, i in enumerate(indices):
            text[b, :len(self.texts[i])] = self.texts[i]
            mel[b, :, :self.mels[i].shape[1]] = self.mels[i]
            gate[b, self.mels[i].shape[1] - 1:] = 1.0
        return {"text": torch.from_numpy(text), "text_lengths": torch.tensor([len(self.texts[i]) for i in indices]),
                "mel": torch.from_numpy(mel), "gate": torch.from_numpy(gate),
                "mel_lengths": torch.tensor([self.mels[i].shape[1] for i in indices])}


class WaveGlowData:
    def __init__(self, corpus: Path, split: str, segment_length: int, hop: int = 256, limit: int | None = None,
                 dither: float = 0.0):
        records = read_manifest(corpus, split)[:limit]
        self.audio = [np.load(utterance_files(corpus, r["id"])[0]) for r in records]  # int16, as stored
        self.mels = [read_mel(corpus, r["id"]) for r in records]
        self.lengths = np.array([len(a) for a in self.audio])
        self.segment, self.hop, self.dither = segment_length, hop, dither

    def __len__(self):
        return len(self.audio)

    def batch(self, indices, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Random segments starting on a frame boundary, with the mel frames that cover them.

        Frame t of the stored (whole-utterance) mel is centred on sample t*hop, so a segment
        starting at sample j*hop goes with frames j .. j + segment//hop: the frames NVIDIA would
        compute from the segment alone, but without its reflect padding at the segment's edges.
        The audio gets Gaussian noise of std `dither` everywhere, padding included (TrainConfig.dither).
        """
        n_frames = self.segment // self.hop + 1
        audio = np.zeros((len(indices), self.segment), np.float32)
        mel = np.full((len(indices), self.mels[0].shape[0], n_frames), SILENCE_LOG_MEL, np.float32)
        for b, i in enumerate(indices):
            last_start = max(0, (len(self.audio[i]) - self.segment) // self.hop)
            j = int(rng.integers(0, last_start + 1))
            piece = self.audio[i][j * self.hop:j * self.hop + self.segment]
            audio[b, :len(piece)] = piece / 32768.0
            frames = self.mels[i][:, j:j + n_frames]
            mel[b, :, :frames.shape[1]] = frames
        if self.dither:  # drawn in float32: 4.4 ms a batch of 48 x 8000 against 6.3 in float64 + cast
            audio += np.float32(self.dither) * rng.standard_normal(audio.shape, dtype=np.float32)
        return {"mel": torch.from_numpy(mel), "audio": torch.from_numpy(audio)}


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: int = 32) -> list:
    """One epoch of batches of similar lengths, in random order: far less padding to compute.

    Shuffle, sort within windows of `bucket` batches, cut, shuffle the batches. A last partial
    batch is dropped (as NVIDIA's drop_last)."""
    order = rng.permutation(len(lengths))
    batches = []
    window = batch_size * bucket
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


# ---------------------------------------------------------------------------------------------
# the model, one step, validation


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # "off": no autocast


def pick_device(cfg: TrainConfig) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)


def precision_and_graphs(cfg: TrainConfig, device: torch.device) -> tuple[str, bool]:
    """(AMP mode 'bf16' | 'fp16' | 'off', whether the step replays from CUDA graphs) for a resolved
    config on `device`; raises ValueError for a --graphs on that cannot be honoured."""
    on_cuda = device.type == "cuda"
    # auto AMP: bf16 for WaveGlow, whose FP16 AMP run (NVIDIA's choice) went NaN at step 4,908 on
    # the H100 (bf16 has FP32's range and needs no loss scaling); FP16 for eager Tacotron2
    auto_amp = "off" if not on_cuda else "bf16" if cfg.model == "waveglow" else "fp16"
    if cfg.model == "tacotron2":  # graphed: decoder + postnet + backward in FP32 + TF32
        graphs = cfg.graphs == "on" or (cfg.graphs == "auto" and cfg.amp in ("auto", "off") and on_cuda)
        if graphs and (not on_cuda or cfg.amp not in ("auto", "off")):
            raise ValueError("--graphs on needs Tacotron2 on a CUDA device without AMP (it runs FP32 + TF32)")
        return ("off" if graphs else auto_amp if cfg.amp == "auto" else cfg.amp), graphs
    # graphed: the whole forward + backward, in bf16 or FP32 (no host-side loss scaling)
    amp = auto_amp if cfg.amp == "auto" else cfg.amp
    graphs = cfg.graphs == "on" or (cfg.graphs == "auto" and on_cuda and amp != "fp16")
    if graphs and (not on_cuda or amp == "fp16"):
        raise ValueError("--graphs on needs WaveGlow on a CUDA device with bf16 or no AMP "
                         "(FP16's loss scaling skips steps from the host)")
    return amp, graphs


def set_backend_flags(cfg: TrainConfig, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = cfg.model == "waveglow"  # fixed shapes only there


def make_optimizer(model, cfg: TrainConfig, device: torch.device, fused: bool | None = None):
    """Adam; fused on a GPU unless told: one kernel for all parameters instead of a few per tensor
    (13 ms of a WaveGlow step on the H100 unfused). Its state dict is the same as unfused Adam's."""
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda" if fused is None else fused)


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    if cfg.model == "tacotron2":
        return Tacotron2(Tacotron2Config.from_dict(cfg.model_config))
    return WaveGlow(WaveGlowConfig.from_dict(cfg.model_config))


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def compute_loss(model, cfg: TrainConfig, batch: dict):
    if cfg.model == "tacotron2":
        outputs = model(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"])
        return tacotron2_loss(outputs, batch["mel"], batch["gate"]), outputs
    outputs = model(batch["mel"], batch["audio"])
    return waveglow_loss(outputs, cfg.sigma), outputs


def update_weights(loss: torch.Tensor, model, optimizer, scaler, cfg: TrainConfig, backward: bool) -> torch.Tensor:
    """What follows a step's loss: its backward (`backward`: an eager step; a graphed step has
    done its own), unscaling, clipping, the optimizer's step and the scaler's update. Returns the
    gradient norm before clipping. train.py and speed.py both run it."""
    if backward:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return grad_norm


@torch.no_grad()
def validate(model, cfg: TrainConfig, val_batches: list[dict], device, autocast) -> tuple[dict, object]:
    """Mean validation losses (eval mode: dropout off, BatchNorm running statistics), and the
    outputs of the first batch for the alignment picture."""
    model.eval()
    totals: dict[str, float] = {}
    first = None
    for batch in val_batches:
        with autocast():
            losses, outputs = compute_loss(model, cfg, to_device(batch, device))
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v) / len(val_batches)
        if first is None:
            first = outputs
    model.train()
    return {f"val_{k}": round(v, 6) for k, v in totals.items()}, first


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path: Path, model, optimizer, scaler, cfg: TrainConfig, step: int, epoch: int,
                    elapsed: float) -> None:
    checkpoint = {
        "epoch": epoch, "iteration": step, "config": model.nvidia_config(),
        "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "train_config": dataclasses.asdict(cfg), "elapsed_seconds": elapsed,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)  # the previous checkpoint stays whole until the new one is


def _log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------------
# the loop


def train(cfg: TrainConfig) -> dict:
    """Run one time-boxed piece; returns {'step', 'epoch', 'checkpoint', 'export', 'stopped'}."""
    t_start = time.perf_counter()
    cfg = cfg.resolved()
    device = pick_device(cfg)
    amp, graphs = precision_and_graphs(cfg, device)
    amp_dtype = AMP_DTYPES.get(amp)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    torch.manual_seed(cfg.seed)
    set_backend_flags(cfg, device)
    out = Path(cfg.out)
    log_dir = out / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "train.jsonl"
    ckpt_path = out / CHECKPOINT_NAMES[cfg.model]

    model = build_model(cfg)
    optimizer = make_optimizer(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")  # bf16 needs no loss scaling
    step, epoch, elapsed_before = 0, 0, 0.0
    warmup = (0, 0)  # (first step, steps): the learning-rate ramp after --init-from
    if ckpt_path.is_file():  # resume: everything as it was
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, epoch = checkpoint["iteration"], checkpoint["epoch"]
        elapsed_before = checkpoint["elapsed_seconds"]
        _log(log_path, {"event": "resumed", "step": step, "epoch": epoch, "from": ckpt_path.name})
    elif cfg.init_from:  # a fresh machine: the exported weights, a new optimizer
        _, weights, info = export.read_shards(cfg.init_from, cfg.model)
        load_folded_state_dict(model, weights)
        step = int(info.get("step", 0))
        elapsed_before = float(info.get("elapsed_seconds", 0.0))
        warmup = (step, cfg.restart_warmup)
        _log(log_path, {"event": "initialised", "step": step, "from": str(cfg.init_from),
                        "lr_warmup_steps": cfg.restart_warmup})
    model.to(device).train()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate_at(cfg, step, warmup)

    corpus = Path(cfg.corpus)
    rng = np.random.default_rng(cfg.seed + step)  # a resumed run does not replay the same batches
    if cfg.model == "tacotron2":
        data = TacotronData(corpus, "train")
        val = TacotronData(corpus, "val", limit=cfg.val_items)
        val_batches = [val.batch(list(range(i, min(i + cfg.batch_size, len(val)))))
                       for i in range(0, len(val), cfg.batch_size)]
        make_batch = data.batch
    else:
        data = WaveGlowData(corpus, "train", cfg.segment_length, dither=cfg.dither)
        val = WaveGlowData(corpus, "val", cfg.segment_length, limit=cfg.val_items, dither=cfg.dither)
        val_rng = np.random.default_rng(0)  # the same validation segments every time
        val_batches = [val.batch(list(range(i, min(i + cfg.batch_size, len(val)))), val_rng)
                       for i in range(0, len(val), cfg.batch_size)]
        make_batch = lambda idx: data.batch(idx, rng)  # noqa: E731
    step_fn = None
    capture_logged = False
    if graphs and cfg.model == "tacotron2":
        longest_text = max(len(t) for t in data.texts + val.texts)
        step_fn = GraphedTacotron2Step(model, cfg.batch_size, t_in=-(-longest_text // 8) * 8,
                                       warmup_each=cfg.graph_warmup == "each")
    elif graphs:
        step_fn = GraphedWaveGlowStep(model, cfg.batch_size, cfg.segment_length, cfg.sigma, amp_dtype)
    if len(data) < cfg.batch_size:
        raise ValueError(f"the corpus has {len(data)} training utterances, fewer than a batch of {cfg.batch_size}")
    _log(log_path, {"event": "start", "model": cfg.model, "device": str(device), "amp": amp,
                    "graphs": graphs, "train_items": len(data), "val_items": len(val), "batch_size": cfg.batch_size,
                    "lr": cfg.learning_rate, **({"lr_decay": list(cfg.lr_decay)} if cfg.lr_decay else {}),
                    **({"dither": cfg.dither} if cfg.model == "waveglow" else {}),
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "model_config": model.nvidia_config()})

    deadline = t_start + cfg.minutes * 60
    # SIGTERM / SIGUSR1 end the piece early the ordinary way (checkpoint, validation, export), so
    # a lease running short of device time still gets the progress back: `kill -USR1 PID`
    stop_signal: list[int] = []
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous_handlers[sig] = signal.signal(sig, lambda signum, frame: stop_signal.append(signum))
    save_seconds = 30.0 if device.type == "cuda" else 5.0  # until a real save has been timed
    # kept back at the end: the last checkpoint (save + validation) and the export (about as long)
    slowest_step = 0.0
    bad_steps = 0
    last_save = time.perf_counter()
    stopped = "time"
    window: dict[str, float] = {}
    window_items, window_t0 = 0, time.perf_counter()

    def checkpoint_now() -> None:
        nonlocal save_seconds, last_save
        t0 = time.perf_counter()
        elapsed = elapsed_before + time.perf_counter() - t_start
        save_checkpoint(ckpt_path, model, optimizer, scaler, cfg, step, epoch, elapsed)
        val_losses, outputs = validate(model, cfg, val_batches, device, autocast)
        _log(log_path, {"step": step, "epoch": epoch, **val_losses, "wall": round(elapsed, 1)})
        if cfg.model == "tacotron2":
            n_out, n_in = int(val_batches[0]["mel_lengths"][0]), int(val_batches[0]["text_lengths"][0])
            plots.save_alignment(log_dir / f"alignment_{step:07d}.png",
                                 outputs[3][0, :n_out, :n_in].float().cpu().numpy(),
                                 val_batches[0]["mel"][0, :, :n_out].numpy(),
                                 outputs[1][0, :, :n_out].float().cpu().numpy(), title=f"step {step}")
        save_seconds = max(save_seconds, time.perf_counter() - t0)
        last_save = time.perf_counter()

    try:
        while True:
            for indices in bucketed_batches(data.lengths, cfg.batch_size, rng):
                now = time.perf_counter()
                if stop_signal:
                    stopped = f"signal {signal.Signals(stop_signal[0]).name}"
                    break
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    stopped = "max_steps"
                    break
                # keep back one more step (with margin) and a checkpoint's time
                if now + 1.5 * slowest_step + 2 * save_seconds > deadline:
                    break
                t0 = time.perf_counter()
                batch = to_device(make_batch(list(indices)), device)
                if step_fn is not None:  # forward and backward, gradients zeroed first
                    losses = step_fn.step(batch)
                    loss = losses["loss"]
                    if getattr(step_fn, "capture_error", None) and not capture_logged:
                        capture_logged = True  # it went on without graphs, eagerly
                        _log(log_path, {"event": "CUDA graph capture failed; eager steps", "step": step,
                                        "error": step_fn.capture_error})
                else:
                    with autocast():
                        losses, _ = compute_loss(model, cfg, batch)
                    loss = losses["loss"]
                if not torch.isfinite(loss):
                    # one bad batch (an FP16 overflow in the flow, say) is skipped, as GradScaler skips
                    # an overflowing step; a run that keeps failing stops, its last checkpoint intact
                    bad_steps += 1
                    _log(log_path, {"event": "non-finite loss, batch skipped", "step": step, "in_a_row": bad_steps})
                    if bad_steps >= MAX_BAD_STEPS:
                        raise FloatingPointError(f"the loss was not finite {bad_steps} times in a row (step {step})")
                    continue
                bad_steps = 0
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(cfg, step, warmup)
                grad_norm = update_weights(loss, model, optimizer, scaler, cfg, backward=step_fn is None)
                step += 1
                for k, v in losses.items():
                    window[k] = window.get(k, 0.0) + float(v.detach())
                window["grad_norm"] = window.get("grad_norm", 0.0) + float(grad_norm)
                window_items += len(indices)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                slowest_step = max(slowest_step, time.perf_counter() - t0) if step > 2 else slowest_step
                if step % cfg.log_every == 0:
                    n = cfg.log_every
                    _log(log_path, {"step": step, "epoch": epoch, **{k: round(v / n, 6) for k, v in window.items()},
                                    "lr": optimizer.param_groups[0]["lr"],
                                    "items_per_s": round(window_items / (time.perf_counter() - window_t0), 2),
                                    "wall": round(elapsed_before + time.perf_counter() - t_start, 1)})
                    window, window_items, window_t0 = {}, 0, time.perf_counter()
                if (time.perf_counter() - last_save > cfg.checkpoint_minutes * 60
                        and deadline - time.perf_counter() > 4 * save_seconds):  # not just before the last
                    checkpoint_now()
            else:
                epoch += 1
                continue
            break
    finally:  # a second signal from here on stops the process at once, as usual
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)

    checkpoint_now()
    elapsed = elapsed_before + time.perf_counter() - t_start
    files = export.export_checkpoint(ckpt_path, cfg.model, out / "export",
                                     info={"step": step, "epoch": epoch, "elapsed_seconds": round(elapsed, 1)})
    _log(log_path, {"event": "stopped", "reason": stopped, "step": step, "epoch": epoch,
                    "wall": round(elapsed, 1), "export": [f.name for f in files]})
    return {"step": step, "epoch": epoch, "checkpoint": ckpt_path, "export": files, "stopped": stopped}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts_desktop.train.train", description=__doc__.split("\n")[0])
    p.add_argument("model", choices=["tacotron2", "waveglow"])
    p.add_argument("--corpus", required=True, help="folder written by tts_desktop.train.corpus")
    p.add_argument("--out", required=True, help="run folder: checkpoint, log/, export/ (resumed if it has one)")
    p.add_argument("--minutes", type=float, required=True, help="stop cleanly, checkpointed, before this")
    p.add_argument("--init-from", help="folder of exported FP16 shards to start from (fresh machine)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--lr", type=float, dest="learning_rate")
    p.add_argument("--lr-decay", nargs=3, metavar=("FIRST_STEP", "LAST_STEP", "FINAL_LR"),
                   help="anneal the rate geometrically from FIRST_STEP to FINAL_LR at LAST_STEP")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--segment-length", type=int, default=TrainConfig.segment_length)
    p.add_argument("--dither", type=float, default=TrainConfig.dither,
                   help="WaveGlow: std of the Gaussian noise added to the training audio (0: none)")
    p.add_argument("--model-config", type=json.loads, default={},
                   help='JSON overrides of the model config, e.g. \'{"wn_n_channels": 256}\'')
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto")
    p.add_argument("--graphs", choices=["auto", "on", "off"], default="auto",
                   help="Tacotron2 on CUDA: replay decoder+postnet+backward from CUDA graphs (FP32+TF32)")
    p.add_argument("--graph-warmup", choices=["each", "first"], default=TrainConfig.graph_warmup,
                   help="Tacotron2 graphs: warm up eagerly before each length's capture, or the first only")
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint-minutes", type=float, default=TrainConfig.checkpoint_minutes)
    p.add_argument("--log-every", type=int, default=TrainConfig.log_every)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    args = vars(p.parse_args(argv))
    if args["lr_decay"] is not None:
        first, last, final = args["lr_decay"]
        try:
            args["lr_decay"] = (int(first), int(last), float(final))
        except ValueError:
            p.error(f"--lr-decay takes two step numbers and a rate, not {' '.join(args['lr_decay'])}")
    result = train(TrainConfig(**args))
    print(f"stopped ({result['stopped']}) at step {result['step']}; export: {result['export'][0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
