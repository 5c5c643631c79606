"""`tts-desktop speak`: one text to one WAV file (or to the speakers), with optional dumps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tts_desktop.cli.common import (add_synthesis_options, add_voice_options, check_engine_options,
                                    load_voice, report_capped, synthesis_options)
from tts_desktop.cli.errors import CliError


def add_parser(sub):
    p = sub.add_parser("speak", help="synthesize text to a WAV file or the speakers",
                       description="Synthesize TEXT (or standard input) to OUT.wav, or play it when -o is absent.")
    p.add_argument("text", nargs="?", metavar="TEXT", help="text to speak (default: read standard input)")
    p.add_argument("-o", "--output", metavar="OUT", help="output .wav or .flac file")
    p.add_argument("--float", action="store_true", help="write 32-bit float samples instead of PCM_16")
    p.add_argument("--dump", metavar="DIR",
                   help="also write mel.npy (80xT after the postnet), alignment.npy (T_out x T_in), "
                        "gate.npy and audio.npy (float32 after the denoiser) into DIR")
    add_voice_options(p)
    add_synthesis_options(p)
    return p


def read_text(args) -> str:
    if args.text is not None:
        return args.text
    if sys.stdin is None or sys.stdin.isatty():
        raise CliError("no text given: pass TEXT or pipe it on standard input")
    return sys.stdin.read()


def dump_arrays(folder: Path, result) -> None:
    """Sentences are concatenated along time; the alignment becomes block-diagonal over them."""
    from tts_desktop.atomic import atomic_save_npy

    folder.mkdir(parents=True, exist_ok=True)
    sentences = result.sentences
    mel = np.concatenate([s.mel for s in sentences], axis=1)
    gate = np.concatenate([s.gate for s in sentences])
    t_out = sum(s.alignment.shape[0] for s in sentences)
    t_in = sum(s.alignment.shape[1] for s in sentences)
    alignment = np.zeros((t_out, t_in), np.float32)
    r = c = 0
    for s in sentences:
        h, w = s.alignment.shape
        alignment[r : r + h, c : c + w] = s.alignment
        r, c = r + h, c + w
    for name, arr in (("mel", mel), ("alignment", alignment), ("gate", gate), ("audio", result.audio)):
        atomic_save_npy(folder / f"{name}.npy", np.asarray(arr, np.float32))


def run(args) -> int:
    from tts_desktop.audio import write_audio
    from tts_desktop.audio.playback import play_blocking, playback_status
    from tts_desktop.text import split_sentences

    check_engine_options(args)
    text = read_text(args)
    options = synthesis_options(args)
    if not split_sentences(text):
        raise CliError("there is nothing to say: the text is empty")
    if args.output is None:
        ok, reason = playback_status()
        if not ok:
            raise CliError(f"cannot play audio ({reason}): give an output file with -o OUT.wav")
    voice = load_voice(args)
    result = voice.synthesize(text, options)
    report_capped(result.sentences)
    if args.dump:
        dump_arrays(Path(args.dump), result)
    if args.output:
        write_audio(args.output, result.audio, result.sample_rate, "float" if args.float else "pcm16")
        print(f"{args.output}: {result.audio_seconds:.2f} s of audio in {result.latency * 1000:.0f} ms "
              f"(RTF {result.rtf:.1f}, {result.frames} mel frames, {len(result.sentences)} sentence(s))")
    else:
        play_blocking(result.audio, result.sample_rate)
    return 0
