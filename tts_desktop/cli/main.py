"""`tts-desktop`: the command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import argparse
import sys

from tts_desktop import __version__
from tts_desktop.cli.errors import EXIT_CODES_HELP, CliError, EXIT_INTERRUPTED, friendly_error

COMMANDS = ("speak", "export", "import", "text", "voices", "doctor", "bench", "gui")


def build_parser() -> argparse.ArgumentParser:
    from tts_desktop.cli import (cmd_bench, cmd_doctor, cmd_export, cmd_gui, cmd_import, cmd_speak,
                                 cmd_text, cmd_voices)

    parser = argparse.ArgumentParser(
        prog="tts-desktop",
        description="Text to speech with NVIDIA's Tacotron2 + WaveGlow, on the GPU or the CPU. "
                    "With no command, opens the desktop window.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tts-desktop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (cmd_speak, cmd_export, cmd_import, cmd_text, cmd_voices, cmd_doctor, cmd_bench,
                   cmd_gui):
        p = module.add_parser(sub)
        p.epilog = EXIT_CODES_HELP
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["gui"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("tts-desktop: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CliError as e:
        print(f"tts-desktop: {e}", file=sys.stderr)
        return e.code
    except Exception as e:  # anything we know how to phrase becomes one line, never a traceback
        message, code = friendly_error(e)
        if message is None:
            raise
        print(f"tts-desktop: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
