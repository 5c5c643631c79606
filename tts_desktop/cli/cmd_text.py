"""`tts-desktop text`: show what the model will read — normalised sentences, or symbol ids."""

from __future__ import annotations

import json

from tts_desktop.cli.cmd_speak import read_text


def add_parser(sub):
    p = sub.add_parser("text", help="print the normalised sentences (or symbol ids) of a text",
                       description="Print each sentence as the model reads it, one per line; with --ids, "
                                   "the symbol ids of the whole text as one JSON list on the last line.")
    p.add_argument("text", nargs="?", metavar="TEXT", help="text (default: read standard input)")
    p.add_argument("--ids", action="store_true", help="print the symbol ids of the whole text as JSON")
    return p


def run(args) -> int:
    from tts_desktop.text import normalize, split_sentences, text_to_sequence, TextError

    text = read_text(args)
    sentences = split_sentences(text)
    if not sentences:
        raise TextError("there is nothing to say: the text is empty")
    for s in sentences:
        print(normalize(s))
    if args.ids:
        print(json.dumps(text_to_sequence(text)))
    return 0
