"""Text → symbol ids for the model, and back.

As NVIDIA's `text_to_sequence`: the text between ARPAbet groups in curly braces is cleaned piece
by piece with `english_cleaners`, each character found in the symbol table becomes its id (the
pad "_" and anything not in the table are skipped), and each phone of a group such as
`{HH AH0 L OW1}` becomes the id of its '@'-prefixed symbol.

Where NVIDIA is silent we speak up: an unknown phone raises `TextError` naming it (NVIDIA skips
it), phones may be written in lower case, and text with nothing to say raises `TextError`.
One more deliberate difference: "_" is skipped, as NVIDIA's code means to do; its test
`s is not '_'` compares identity, which fails on current Python, so its ids carry the pad id 0
in the middle of the text wherever the text has an underscore.
"""

from __future__ import annotations

import re

from tts_desktop.text.cleaners import english_cleaners
from tts_desktop.text.symbols import LETTERS, PAD, SYMBOL_TO_ID, SYMBOLS


class TextError(ValueError):
    """The text cannot be spoken: it is empty, has nothing speakable, or has an unknown phone."""


_ARPABET_GROUP = re.compile(r"\{([^{}]*)\}")
_TEXT_IDS = {s: i for s, i in SYMBOL_TO_ID.items() if len(s) == 1 and s != PAD}
_SPEAKABLE_IDS = frozenset(SYMBOL_TO_ID[c] for c in LETTERS) | frozenset(
    i for s, i in SYMBOL_TO_ID.items() if s.startswith("@"))


def _text_ids(text: str) -> list[int]:
    get = _TEXT_IDS.get
    return [i for i in map(get, english_cleaners(text)) if i is not None]


def _phone_ids(group: str) -> list[int]:
    ids = []
    for phone in group.split():
        symbol_id = SYMBOL_TO_ID.get("@" + phone.upper())
        if symbol_id is None:
            raise TextError(f"unknown ARPAbet phone {phone!r} in {{{group}}}: phones are CMUdict's, "
                            "such as {HH AH0 L OW1}; write plain words outside curly braces")
        ids.append(symbol_id)
    return ids


def to_ids(text: str) -> list[int]:
    """The ids of `text`, possibly empty; raises `TextError` only for an unknown phone."""
    ids: list[int] = []
    start = 0
    for group in _ARPABET_GROUP.finditer(text):
        ids += _text_ids(text[start:group.start()])
        ids += _phone_ids(group.group(1))
        start = group.end()
    ids += _text_ids(text[start:])
    return ids


def text_to_sequence(text: str) -> list[int]:
    """The symbol ids the model reads for `text`: NVIDIA's ids for plain ASCII text.

    Raises `TextError` for empty or whitespace-only text, text with no letter or phone left after
    cleaning (only emoji or punctuation, say), and unknown phones in curly braces.
    """
    if not text or text.isspace():
        raise TextError("there is nothing to say: the text is empty")
    ids = to_ids(text)
    if _SPEAKABLE_IDS.isdisjoint(ids):
        raise TextError(f"there is nothing to say in {_preview(text)}: no letter or ARPAbet "
                        "phone is left once symbols the voice cannot read are removed")
    return ids


def has_speech(text: str) -> bool:
    """True when `text` has at least one letter or phone the model can read."""
    return not _SPEAKABLE_IDS.isdisjoint(to_ids(text))


def sequence_to_text(ids) -> str:
    """The symbols of `ids` as text, phones back in curly braces ("{HH AH0} {L OW1}" joins up)."""
    parts = []
    for symbol_id in ids:
        if not 0 <= symbol_id < len(SYMBOLS):
            continue
        symbol = SYMBOLS[symbol_id]
        parts.append("{" + symbol[1:] + "}" if symbol.startswith("@") else symbol)
    return "".join(parts).replace("}{", " ")


def normalize(text: str) -> str:
    """What the model reads for `text`: the cleaned symbols, phones in curly braces."""
    return sequence_to_text(to_ids(text))


def _preview(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)
