"""Moving trained weights off the GPU machine, and turning them into the demo voice folder.

A transfer from the GPU machine carries at most 16 MiB per file (64 MiB per transfer), and the
full checkpoints (float32 weights + Adam's two moments) are far larger. So the weights travel as
FP16 *shards*: safetensors files of at most `max_bytes` each, packed by size, named
`{model}.fp16.{i}.safetensors`, plus `{model}.json` with the model's config, the training step,
and each shard's keys and SHA-256. Keys are NVIDIA's, weight norm already folded (as a voice
folder stores them), so the shards are exactly what `save_voice` needs: no torch involved.

    # on the GPU machine (train.py does this itself at the end of every run):
    python -m tts_desktop.train.export shards tacotron2 runs/tacotron2/checkpoint_Tacotron2_last.pt --out $OUT/t2
    # here, once both models' shards are back:
    python -m tts_desktop.train.export voice --tacotron2 t2 --waveglow wg --out resources/voices/demo

`shards` reads the checkpoint through `tts_desktop.model.importer`, so an exported model has
already passed the app's own checks. The same shards warm-start training in a later session
(`train.py --init-from DIR`): weights only, the optimizer starts afresh.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from tts_desktop.model.config import AudioConfig, Tacotron2Config, VoiceConfig, WaveGlowConfig
from tts_desktop.model.importer import load_tacotron2, load_waveglow
from tts_desktop.model.voice_files import save_voice, tacotron2_shapes, waveglow_shapes, weights_problem
from tts_desktop.text.symbols import SYMBOLS

MAX_SHARD_BYTES = 15 * 2**20  # under the 16 MiB a transfer allows per file, with room for headers
MODELS = ("tacotron2", "waveglow")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_shards(weights: dict[str, np.ndarray], config: dict, out_dir, model: str, info: dict | None = None,
                 max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write FP16 shards + index for `model` ('tacotron2' or 'waveglow'); returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    half = {k: np.ascontiguousarray(v, dtype=np.float16) for k, v in weights.items()}
    too_big = [k for k, v in half.items() if v.nbytes > max_bytes]
    if too_big:
        raise ValueError(f"{too_big[0]} alone is over {max_bytes} bytes in FP16")
    # first-fit decreasing: few shards, none over the limit
    shards: list[list[str]] = []
    sizes: list[int] = []
    for key in sorted(half, key=lambda k: -half[k].nbytes):
        for i, size in enumerate(sizes):
            if size + half[key].nbytes <= max_bytes:
                shards[i].append(key)
                sizes[i] += half[key].nbytes
                break
        else:
            shards.append([key])
            sizes.append(half[key].nbytes)
    for old in out_dir.glob(f"{model}.fp16.*.safetensors"):
        old.unlink()  # a previous export with more shards must not leave strays behind
    index = {"model": model, "dtype": "float16", "config": config, "info": info or {}, "shards": []}
    files = []
    for i, keys in enumerate(shards):
        path = out_dir / f"{model}.fp16.{i}.safetensors"
        save_file({k: half[k] for k in sorted(keys)}, str(path))
        index["shards"].append({"file": path.name, "sha256": _sha256(path), "keys": sorted(keys)})
        files.append(path)
    index_path = out_dir / f"{model}.json"
    index_path.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return files + [index_path]


def read_shards(directory, model: str) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(config, float32 weights, info) from the shards of `model` in `directory`, checksums checked."""
    directory = Path(directory)
    index = json.loads((directory / f"{model}.json").read_text(encoding="utf-8"))
    weights: dict[str, np.ndarray] = {}
    for shard in index["shards"]:
        path = directory / shard["file"]
        if _sha256(path) != shard["sha256"]:
            raise ValueError(f"{path} is damaged: its SHA-256 differs from {model}.json's")
        tensors = load_file(str(path))
        if sorted(tensors) != sorted(shard["keys"]):
            raise ValueError(f"{path} does not hold the keys {model}.json lists")
        weights.update({k: v.astype(np.float32) for k, v in tensors.items()})
    return index["config"], weights, index.get("info", {})


def export_checkpoint(checkpoint, model: str, out_dir, info: dict | None = None,
                      max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """A train.py (or NGC) checkpoint of `model` -> FP16 shards, through the app's importer."""
    checkpoint = Path(checkpoint)
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, not {model!r}")
    load = load_tacotron2 if model == "tacotron2" else load_waveglow
    config, weights, import_info = load(checkpoint)
    info = {**(info or {}), "checkpoint": checkpoint.name, "checkpoint_sha256": import_info["sha256"]}
    return write_shards(weights, config.to_dict(), out_dir, model, info, max_bytes)


def training_history(log_path, step: int | None = None) -> list[dict]:
    """One entry per training run found in a model's train.jsonl (runs appended piece after
    piece): the steps it took the model from and to, and its settings. A run that stopped
    without its own export (a crash, a lost machine) counts up to where the next run started.
    With `step` (the exported model's), only the runs that made that model: the chain back from
    the run that reached it, so later pieces (a voice shipped from an earlier one) and pieces
    that branched from an earlier step are left out."""
    runs = _runs_in_log(log_path)
    if step is None:
        return runs
    chain, target = [], step
    while target != 0:
        # the latest run that ended at the step, else the latest that passed it (an export from a
        # checkpoint inside the run, whose minutes are then not known)
        ended = [r for r in runs if r["steps"][1] == target]
        passed = [r for r in runs if r["steps"][0] < target < r["steps"][1]]
        if ended:
            run = ended[-1]
        elif passed:
            run = {k: v for k, v in passed[-1].items() if k != "minutes"} | {"steps": [passed[-1]["steps"][0], target]}
        else:
            raise ValueError(f"{log_path} does not say how step {step} was reached (no run reached step {target})")
        chain.append(run)
        target = run["steps"][0]
    return chain[::-1]


def _runs_in_log(log_path) -> list[dict]:
    runs, start_step, first_wall = [], 0, None
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        event = row.get("event")
        if event in ("initialised", "resumed"):
            start_step = row["step"]
            if runs and runs[-1]["steps"][1] is None:
                runs[-1]["steps"][1] = start_step
        elif event == "start":
            runs.append({"steps": [start_step, None], "batch_size": row["batch_size"], "lr": row["lr"],
                         "amp": row["amp"], "cuda_graphs": row["graphs"],
                         **{k: row[k] for k in ("dither", "lr_decay") if k in row}})
            first_wall = None
        elif event is None and runs and "wall" in row and first_wall is None:
            first_wall = row["wall"]  # "wall" counts on from the run before
        elif event == "stopped" and runs:
            runs[-1]["steps"][1] = row["step"]
            if first_wall is not None:  # from its first log line: short by one logging window
                runs[-1]["minutes"] = round((row["wall"] - first_wall) / 60, 1)
    return [r for r in runs if r["steps"][1] is not None and r["steps"][1] > r["steps"][0]]


def corpus_provenance(corpus_json) -> dict:
    """What a voice says about its training corpus, from the corpus.json that corpus.py wrote."""
    info = json.loads(Path(corpus_json).read_text(encoding="utf-8"))
    config = info["config"]
    return {"corpus": f"LJSpeech transcripts spoken by espeak-ng (voice {config['voice']}, "
                      f"{config['rate']} words per minute)",
            "corpus_details": {"espeak": info["espeak"].split("  Data at:")[0],
                               "speech": config, "utterances": info["utterances"], "hours": info["hours"]}}


def build_voice(tacotron2_dir, waveglow_dir, out_dir, name: str = "demo", provenance: dict | None = None,
                logs=None) -> Path:
    """The voice folder (FP16) from the two models' shards. `provenance` adds to what the voice's
    JSON says of how it was made (corpus_provenance); `logs`, a folder with MODEL/train.jsonl, adds
    each model's training runs up to the step its shards hold (training_history)."""
    t_config, t_weights, t_info = read_shards(tacotron2_dir, "tacotron2")
    w_config, w_weights, w_info = read_shards(waveglow_dir, "waveglow")
    if logs is not None:
        provenance = {**(provenance or {}), "training_runs": {
            m: training_history(Path(logs) / m / "train.jsonl", info.get("step"))
            for m, info in (("tacotron2", t_info), ("waveglow", w_info))}}
    tacotron2 = Tacotron2Config.from_dict(t_config)
    waveglow = WaveGlowConfig.from_dict(w_config)
    for weights, table in ((t_weights, tacotron2_shapes(tacotron2)), (w_weights, waveglow_shapes(waveglow))):
        problem = weights_problem(weights, table)
        if problem:
            raise ValueError(problem)
    if tacotron2.n_symbols != len(SYMBOLS):
        raise ValueError(f"the Tacotron2 has {tacotron2.n_symbols} symbols, the app's table {len(SYMBOLS)}")
    config = VoiceConfig(
        name=name, tacotron2=tacotron2, waveglow=waveglow, audio=AudioConfig(), symbols=SYMBOLS,
        provenance={
            "trained": "tts_desktop.train on LJSpeech transcripts spoken by espeak-ng (docs/training.md)",
            "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tacotron2": t_info, "waveglow": w_info,
            "parameters": {"tacotron2": int(sum(w.size for w in t_weights.values())),
                           "waveglow": int(sum(w.size for w in w_weights.values()))},
            **(provenance or {}),
        },
    )
    return save_voice(out_dir, config, t_weights, w_weights, dtype=np.float16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts_desktop.train.export", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("shards", help="checkpoint -> FP16 shards of at most 15 MiB")
    s.add_argument("model", choices=MODELS)
    s.add_argument("checkpoint", type=Path)
    s.add_argument("--out", type=Path, required=True)
    v = sub.add_parser("voice", help="the two models' shards -> an FP16 voice folder")
    v.add_argument("--tacotron2", type=Path, required=True, help="folder with tacotron2.json + shards")
    v.add_argument("--waveglow", type=Path, required=True, help="folder with waveglow.json + shards")
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--name", default="demo")
    v.add_argument("--corpus-json", type=Path, help="the training corpus's corpus.json (what was spoken, how)")
    v.add_argument("--logs", type=Path, help="folder with tacotron2/train.jsonl and waveglow/train.jsonl "
                                             "(docs/training): each model's training runs go into the voice's JSON")
    args = p.parse_args(argv)
    if args.command == "shards":
        for path in export_checkpoint(args.checkpoint, args.model, args.out):
            print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB")
    else:
        provenance = corpus_provenance(args.corpus_json) if args.corpus_json else {}
        out = build_voice(args.tacotron2, args.waveglow, args.out, args.name, provenance, logs=args.logs)
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"voice written to {out}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
