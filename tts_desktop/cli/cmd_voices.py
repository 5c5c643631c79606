"""`tts-desktop voices`: the installed voices, with size, precision and provenance."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("voices", help="list installed voices",
                       description="List bundled voices and those in the user voice folder.")
    return p


def run(args) -> int:
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
