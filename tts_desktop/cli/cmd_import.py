"""`tts-desktop import`: NVIDIA Tacotron2 + WaveGlow checkpoints to a voice folder, without torch."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("import", help="import NVIDIA (NGC / DeepLearningExamples) checkpoints as a voice",
                       description="Read NVIDIA Tacotron2 and WaveGlow checkpoint files (never running code "
                                   "from them) and write a voice folder: safetensors weights + voice.json.")
    p.add_argument("--tacotron2", required=True, metavar="T.pt", help="Tacotron2 checkpoint")
    p.add_argument("--waveglow", required=True, metavar="W.pt", help="WaveGlow checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="VOICE_DIR", help="voice folder to create")
    p.add_argument("--name", help="voice name (default: the folder's name)")
    return p


def run(args) -> int:
    from tts_desktop.model.importer import import_voice

    def progress(fraction: float, message: str) -> None:
        if sys.stderr.isatty():
            print(f"\r{fraction * 100:5.1f}%  {message:<60}", end="", file=sys.stderr, flush=True)

    path = import_voice(Path(args.tacotron2), Path(args.waveglow), Path(args.output),
                        name=args.name, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"voice written to {path}")
    return 0
