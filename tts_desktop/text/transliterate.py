"""Unicode → ASCII, the first step of the English cleaners.

ASCII text passes through untouched, as in NVIDIA's `unidecoder`. Other characters go through
`anyascii` (ISC licence, a maintained table covering all of Unicode) except for the few cases
below, where a table tuned for reading text aloud beats a general transliteration. Each entry
is a deliberate improvement over NVIDIA's `unidecoder`, which drops or mangles them:

- em dash `—` and horizontal bar `―` → a comma pause ("yes — no" → "yes, no"); NVIDIA drops them.
- `…` → "..." (NVIDIA drops it, so the pause it marks is lost).
- `£`, `€`, `¥` are kept for the number step, which reads "£5" as "five pounds",
  "€3.20" as "three euros, twenty cents" and a lone sign as its name. NVIDIA drops `£`,
  and turns `€` into "e" and `¥` into "y".
- vulgar fractions: "2½" → "2 and a half", "¼" → "one quarter" (NVIDIA drops them).
- `°` → "degrees" ("°C" → "degrees celsius", "°F" → "degrees fahrenheit"); NVIDIA drops it.
- `×` → "times", `÷` → "divided by", `±` → "plus or minus", `§` → "section",
  `№` → "number", `©` → "copyright" (NVIDIA: "x", nothing, nothing, ...).
- emoji, pictographs and other symbol characters (Unicode category So/Sk) are dropped: anyascii
  would spell them as ":grinning:", which a voice should not read out. NVIDIA drops most too.
- every Unicode space or line separator becomes a plain space; control and format characters
  (NUL, direction marks, zero-width joiners, byte-order marks, soft hyphens) are dropped, as are
  unassigned, private-use and lone surrogate code points. Nothing ever raises.

Kept as NVIDIA has them, because its training transcripts were cleaned that way (LJSpeech spells
"Müller" fourteen times): the German umlauts ä ö ü → "ae" "oe" "ue".
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from anyascii import anyascii

# Signs that the number step (numbers.py) reads together with the amount after them.
CURRENCY_SIGNS = "£€¥"

# Hand-written because anyascii's answer is right for display but wrong for speech
# ("1/2" reads as "one/two", "deg", ":100:") or differs from NVIDIA's training data (umlauts).
_SPOKEN = {
    "—": ", ", "―": ", ", "…": "...",
    "½": " one half", "¼": " one quarter", "¾": " three quarters",
    "⅓": " one third", "⅔": " two thirds",
    "°": " degrees ", "×": " times ", "÷": " divided by ", "±": " plus or minus ",
    "§": " section ", "№": " number ", "©": " copyright ",
    "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
    **{sign: sign for sign in CURRENCY_SIGNS},
}

# Replacements that depend on neighbours, run before the per-character table. "(?<!\s)\s*"
# takes the spaces before a sign without rescanning a long run of spaces from each position.
_CONTEXTUAL = [
    (re.compile(r"(?<!\s)\s*[—―]\s*"), ", "),           # no space before the comma pause
    (re.compile(r"(\d)\s*½"), r"\1 and a half"),
    (re.compile(r"(\d)\s*¼"), r"\1 and a quarter"),
    (re.compile(r"(\d)\s*¾"), r"\1 and three quarters"),
    (re.compile(r"(?<!\s)\s*°\s*C\b"), " degrees celsius"),
    (re.compile(r"(?<!\s)\s*°\s*F\b"), " degrees fahrenheit"),
]
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_DROPPED_CATEGORIES = {"So", "Sk", "Cc", "Cf", "Cn", "Co", "Cs", "Mn", "Me", "Mc"}


@lru_cache(maxsize=4096)
def _char_to_ascii(char: str) -> str:
    spoken = _SPOKEN.get(char)
    if spoken is not None:
        return spoken
    if char.isspace():
        return " "
    if unicodedata.category(char) in _DROPPED_CATEGORIES:
        return ""
    return anyascii(char)


def _run_to_ascii(match: re.Match) -> str:
    return "".join(_char_to_ascii(c) for c in match.group(0))


def to_ascii(text: str) -> str:
    """Transliterate `text` to ASCII for speech; `CURRENCY_SIGNS` are the only non-ASCII left."""
    if text.isascii():
        return text
    # NFC first, so that "e" + combining acute becomes "é" and transliterates to "e".
    text = unicodedata.normalize("NFC", text)
    for pattern, replacement in _CONTEXTUAL:
        text = pattern.sub(replacement, text)
    return _NON_ASCII_RUN.sub(_run_to_ascii, text)
