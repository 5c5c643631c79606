"""`tts-desktop gui` (and `tts-desktop` alone): the desktop window."""

from __future__ import annotations

from tts_desktop.api import DEVICES, PRECISIONS


def add_parser(sub):
    p = sub.add_parser("gui", help="open the desktop window (the default with no command)")
    # No defaults here: an option left out means "as last time" (the window's saved settings).
    p.add_argument("--voice", metavar="V", help="voice folder or name (default: the last one used)")
    p.add_argument("--device", choices=DEVICES, help="auto, cuda or cpu (default: the last one used)")
    p.add_argument("--precision", choices=PRECISIONS, help="GPU engine precision (default: the last one used)")
    return p


def run(args) -> int:
    from tts_desktop.gui.app import run_app

    return run_app(voice=args.voice, device=args.device, precision=args.precision)
