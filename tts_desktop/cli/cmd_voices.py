"""`tts-desktop voices`: the installed voices; `voices download NAME` fetches a published voice."""

from __future__ import annotations

import sys


def add_parser(sub):
    from tts_desktop.download import CATALOGUE

    p = sub.add_parser("voices", help="list installed voices, or download one",
                       description="List bundled voices and those in the user voice folder; "
                                   "'voices download NAME' fetches and imports a published voice.")
    p.add_argument("action", nargs="?", choices=("list", "download"), default="list")
    p.add_argument("name", nargs="?", metavar="NAME", help=f"voice to download: {', '.join(CATALOGUE)}")
    return p


def run(args) -> int:
    if args.action == "download":
        return download(args)
    from tts_desktop.voices import bundled_voices_dir, list_voices, user_voices_dir

    voices = list_voices()
    if not voices:
        print(f"no voices installed (bundled: {bundled_voices_dir()}, user: {user_voices_dir()})")
        return 0
    width = max(len(v.name) for v in voices)
    for v in voices:
        print(f"{v.name:<{width}}  {v.source:<7}  {v.size_bytes / 2**20:7.1f} MiB  {v.precision:<8}  "
              f"{v.path}  {v.description}")
    return 0


def download(args) -> int:
    from tts_desktop.cli.errors import CliError
    from tts_desktop.download import CATALOGUE, download_voice
    from tts_desktop.voices import user_voices_dir

    if not args.name:
        raise CliError(f"which voice? choose one of: {', '.join(CATALOGUE)}", code=2)
    if args.name not in CATALOGUE:
        raise CliError(f"unknown voice {args.name!r}: choose one of: {', '.join(CATALOGUE)}", code=2)
    tty = sys.stderr.isatty()

    def progress(fraction: float, message: str) -> None:
        if tty:
            print(f"\r{fraction * 100:5.1f}%  {message[:70]:<70}", end="", file=sys.stderr, flush=True)

    path = download_voice(args.name, user_voices_dir(), progress=progress)
    if tty:
        print(file=sys.stderr)
    print(f"voice '{args.name}' installed in {path}")
    return 0
