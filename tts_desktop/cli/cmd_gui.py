"""`tts-desktop gui` (and `tts-desktop` alone): the desktop window."""

from __future__ import annotations

from tts_desktop.cli.common import add_voice_options


def add_parser(sub):
    p = sub.add_parser("gui", help="open the desktop window (the default with no command)")
    add_voice_options(p)
    return p


def run(args) -> int:
    from tts_desktop.gui.app import run_app

    return run_app(voice=args.voice, device=args.device, precision=args.precision)
