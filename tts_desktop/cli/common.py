"""Options shared by the sub-commands that synthesize, and the helpers that read them."""

from __future__ import annotations

import argparse
import sys

from tts_desktop.api import DEVICES, PRECISIONS, VOCODERS, SynthesisOptions, Voice
from tts_desktop.cli.errors import EXIT_USAGE, CliError

TF32_HELP = ("with --precision fp32: run WaveGlow's GEMMs on TF32 tensor cores (Ampere or newer; "
             "FP16-like rounding of the GEMM inputs, FP32 accumulation). Default: strict FP32.")


def add_tf32_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tf32", action="store_true", help=TF32_HELP)


def add_voice_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice", metavar="V", help="voice folder or name (default: the bundled demo voice)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="cuda: the GPU engine; cpu: the NumPy reference; auto (default): the GPU when usable")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="GPU engine precision (default fp16)")
    add_tf32_option(p)


def check_engine_options(args) -> None:
    """--tf32 is a mode of the FP32 GPU engine: refuse it, in one line, with anything else (before any
    work is done)."""
    if not getattr(args, "tf32", False):
        return
    if args.precision != "fp32":
        raise CliError(f"--tf32 needs --precision fp32 (TF32 is a mode of the FP32 engine), "
                       f"not --precision {args.precision}", code=EXIT_USAGE)
    if args.device == "cpu":
        raise CliError("--tf32 applies to the GPU engine only, not --device cpu", code=EXIT_USAGE)


def add_synthesis_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("synthesis")
    g.add_argument("--sigma", type=float, default=0.6, help="WaveGlow noise scale (default 0.6)")
    g.add_argument("--denoise", type=float, default=0.01, metavar="STRENGTH",
                   help="denoiser strength, 0 to switch it off (default 0.01)")
    g.add_argument("--seed", type=int, help="random seed for prenet dropout and WaveGlow noise")
    g.add_argument("--no-prenet-dropout", action="store_true",
                   help="switch prenet dropout off for deterministic decoding (NVIDIA keeps it on)")
    g.add_argument("--max-decoder-steps", type=int, metavar="N",
                   help="cap on mel frames per sentence (default: the voice's, 2000 for NVIDIA's)")
    g.add_argument("--no-early-stop", action="store_true",
                   help="ignore the stop token: always decode --max-decoder-steps frames")
    g.add_argument("--vocoder", choices=VOCODERS, default="waveglow", help="default waveglow")


def synthesis_options(args) -> SynthesisOptions:
    if args.no_early_stop and args.max_decoder_steps is None:
        raise ValueError("--no-early-stop needs --max-decoder-steps N (otherwise every sentence "
                         "would run to the voice's cap)")
    return SynthesisOptions(sigma=args.sigma, denoise=args.denoise, seed=args.seed,
                            prenet_dropout=not args.no_prenet_dropout,
                            max_decoder_steps=args.max_decoder_steps,
                            early_stop=not args.no_early_stop, vocoder=args.vocoder)


def load_voice(args) -> Voice:
    check_engine_options(args)
    voice = Voice.load(args.voice, device=args.device, precision=args.precision,
                       tf32=getattr(args, "tf32", False))
    if args.device == "auto" or voice.device_note.startswith("CPU"):
        print(f"tts-desktop: voice '{voice.name}' on {voice.device_note or voice.device}", file=sys.stderr)
    return voice


def report_capped(sentences, where: str = "") -> None:
    """Warn about sentences whose stop token misbehaved: never fired, or fired at once."""
    for s in sentences:
        if len(s.audio) == 0:
            print(f"tts-desktop: warning{where}: the stop token fired on the first frame of sentence "
                  f"{s.index + 1}, so it has no audio (is this voice trained?)", file=sys.stderr)
        elif s.reached_max_steps:
            print(f"tts-desktop: warning{where}: the stop token never fired in sentence "
                  f"{s.index + 1}; it was cut at {s.frames} frames", file=sys.stderr)
