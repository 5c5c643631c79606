"""`english_cleaners`: the text clean-up NVIDIA's Tacotron2 was trained with.

The steps and their order are NVIDIA's: Unicode → ASCII, lower case, numbers → words,
abbreviations → words, runs of whitespace → one space. For ASCII text the result is NVIDIA's,
character for character, except where this project deliberately does better:

- "&" → "and" and "%" → "percent" (NVIDIA drops both: "smith & jones" became "smith  jones");
- e-mail addresses are read out: "bob.smith@example.com" → "bob dot smith at example dot com"
  (NVIDIA drops the "@" and reads "bob.smithexample.com");
- a slash between two words or numbers is a word break: "and/or" → "and or", "12/25/2024" →
  "twelve twenty-five twenty twenty-four" (NVIDIA drops the slash and runs the words together:
  "andor", "twelvetwenty-five..."); a slash on its own is still dropped, as NVIDIA drops it;
- the improvements to Unicode listed in transliterate.py and to numbers listed in numbers.py.

Leading and trailing spaces are kept, as NVIDIA keeps them: they are symbols the model reads.
"""

from __future__ import annotations

import re

from tts_desktop.text.numbers import normalize_numbers
from tts_desktop.text.transliterate import to_ascii

# NVIDIA's list, applied one after another in this order ("mrs" before "mr"), as NVIDIA does:
# a single alternation would differ on run-together text such as "mr.st.".
_ABBREVIATIONS = {
    "mrs": "misess", "mr": "mister", "dr": "doctor", "st": "saint", "co": "company",
    "jr": "junior", "maj": "major", "gen": "general", "drs": "doctors", "rev": "reverend",
    "lt": "lieutenant", "hon": "honorable", "sgt": "sergeant", "capt": "captain",
    "esq": "esquire", "ltd": "limited", "col": "colonel", "ft": "fort",
}
# Matched on lower-cased text, so NVIDIA's IGNORECASE is not needed.
_ABBREVIATION_RES = [(re.compile(rf"\b{short}\."), long) for short, long in _ABBREVIATIONS.items()]
# One scan to skip the eighteen passes when no abbreviation is present (most sentences).
_ANY_ABBREVIATION = re.compile(r"\b(?:" + "|".join(_ABBREVIATIONS) + r")\.")

_SYMBOL_WORDS = re.compile(r"[&%]")  # spaces around the words collapse later
_SPOKEN_SYMBOLS = {"&": " and ", "%": " percent "}
_WHITESPACE = re.compile(r"\s+")
_SLASH_BETWEEN = re.compile(r"(?<=[a-z0-9])/(?=[a-z0-9])")
# lower-cased; "@" alone or before an ARPAbet phone ("@AA1", outside braces) has no local part
# (it starts only where a run of address characters starts: scanning from inside one again and
# again would be quadratic on a long run without an "@")
_EMAIL = re.compile(r"(?<![a-z0-9_%+.-])[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def _spoken_email(m: re.Match) -> str:
    """'bob2@x.com' -> 'bob 2 at x dot com' (its numbers are spelled later, apart from the letters)."""
    local, domain = _LETTER_DIGIT.sub(" ", m.group(0)).split("@", 1)
    return local.replace(".", " dot ") + " at " + domain.replace(".", " dot ")


def expand_abbreviations(text: str) -> str:
    """NVIDIA's abbreviations ("dr." → "doctor") in lower-cased `text`."""
    if not _ANY_ABBREVIATION.search(text):
        return text
    for pattern, long in _ABBREVIATION_RES:
        text = pattern.sub(long, text)
    return text


def english_cleaners(text: str) -> str:
    """Clean `text` for the English Tacotron2: ASCII, lower case, numbers and abbreviations in words."""
    text = to_ascii(text).lower()
    if "@" in text:
        text = _EMAIL.sub(_spoken_email, text)
    text = _SYMBOL_WORDS.sub(lambda m: _SPOKEN_SYMBOLS[m.group(0)], text)
    text = normalize_numbers(text)
    if "/" in text:
        text = _SLASH_BETWEEN.sub(" ", text)
    text = expand_abbreviations(text)
    return _WHITESPACE.sub(" ", text)
