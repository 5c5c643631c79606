"""Split long text into sentences the model can say one at a time.

Tacotron2 was trained on single sentences of LJSpeech (at most about 190 characters), and its
decoder stops when its stop token fires, which it learned to do at a sentence's final punctuation.
So each piece returned here:
- is one sentence: split after . ! ? (and any closing quotes or brackets) followed by a space, but
  not after titles and other abbreviations ("Mr.", "Dr.", "Jan.", "e.g."), initials ("J. F."),
  or a number's point ("3.5"); a blank line always ends a sentence, a single line break does not
  (text pasted from PDFs and e-mails is often wrapped mid-sentence);
- ends with terminal punctuation: a "." is added where there is none, and a trailing , ; : or -
  becomes "." (a piece cut at a clause boundary must still let the stop token fire);
- is at most MAX_SENTENCE_CHARS characters once cleaned (numbers read out), so the attention
  keeps its place: a longer sentence is cut at clause boundaries (; : ,), a clause that is still
  too long at word boundaries, and a single overlong "word" into pieces;
- has something to say: pieces without a letter or phone (whitespace, stray emoji) are dropped.
Missing a boundary costs little (the piece is longer); a wrong one breaks the prosody mid-sentence,
so ambiguous cases lean towards not splitting.
"""

from __future__ import annotations

import re
from functools import lru_cache

from tts_desktop.text.cleaners import english_cleaners

MAX_SENTENCE_CHARS = 250

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_CLOSERS = "\"')]}’”»"
# Terminal punctuation, closing quotes or brackets, then whitespace: a candidate boundary.
# Anchored at the start of a run of punctuation: linear time on long runs such as "!!!!…".
_BOUNDARY = re.compile(rf"(?<![.!?])([.!?]+)([{re.escape(_CLOSERS)}]*)\s+")
_WORD_BEFORE = re.compile(r"(\S+)$")
# Never the end of a sentence: titles before a name, and abbreviations inside one.
_NEVER_FINAL = frozenset("""
    mr mrs ms messrs dr drs prof rev hon st mt ft gen col maj capt lt sgt cpl adm gov sen rep pres
    supt insp det jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e vs cf viz approx
    """.split())
# Usually before a number: "No. 5", "vol. 2", "fig. 3", "pp. 10".
_BEFORE_NUMBER = frozenset("no nos vol vols fig figs p pp art ch sec".split())
# Either ends a sentence or not; split only if the next word is capitalised.
_AMBIGUOUS = frozenset("etc inc ltd co corp jr sr esq bros a.m p.m".split())
_INITIAL = re.compile(r"^[A-Za-z]$|^(?:[A-Za-z]\.)+[A-Za-z]$")  # "J", "U.S", "e.g"
_CLAUSE_END = re.compile(r"(?<=[;:,])\s+")
_WORD = re.compile(r"\S*\{[^{}]*\}\S*|\S+")
_TERMINAL = ".!?"
_HAS_LETTER = re.compile("[a-z]")


def split_sentences(text: str) -> list[str]:
    """Split `text` into speakable sentences, each ending in . ! or ?"""
    pieces = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        for sentence in _sentences(paragraph):
            for piece in _fit(sentence):
                if _HAS_LETTER.search(_cleaned(piece)):  # phones in braces clean to letters too
                    pieces.append(_with_terminal_punctuation(piece))
    return pieces


def _sentences(paragraph: str) -> list[str]:
    sentences = []
    start = 0
    for m in _BOUNDARY.finditer(paragraph):
        if _ends_sentence(paragraph, m):
            sentences.append(paragraph[start:m.start(2)] + m.group(2))
            start = m.end()
    sentences.append(paragraph[start:])
    return [s for s in sentences if s.strip()]


def _ends_sentence(paragraph: str, m: re.Match) -> bool:
    punctuation = m.group(1)
    next_char = paragraph[m.end():m.end() + 1]
    if "!" in punctuation or "?" in punctuation:
        return True
    if m.group(2):  # 'He said "Stop." Then': a closing quote or bracket ends the sentence
        return True
    # Look back a bounded stretch only: searching from the paragraph's start is quadratic.
    word = _WORD_BEFORE.search(paragraph, max(0, m.start(1) - 40), m.start(1))
    word = word.group(1).lstrip(_CLOSERS + "(['\"‘“«").lower() if word else ""
    if punctuation != "." or word in _AMBIGUOUS:   # "..." too: "and so... we left"
        return next_char.isupper()
    if word in _NEVER_FINAL or _INITIAL.match(word):
        return False
    if word in _BEFORE_NUMBER:
        return not next_char.isdigit()
    return True


@lru_cache(maxsize=1024)
def _cleaned(text: str) -> str:
    # Cached: a sentence is cleaned to measure it, then again to check it has something to say.
    return english_cleaners(text)


def _spoken_length(text: str) -> int:
    return len(_cleaned(text))


def _fit(sentence: str) -> list[str]:
    """Cut `sentence` into pieces of at most MAX_SENTENCE_CHARS cleaned characters."""
    if _spoken_length(sentence) <= MAX_SENTENCE_CHARS:
        return [sentence]
    pieces = []
    for clause in _pack(_CLAUSE_END.split(sentence)):
        if _spoken_length(clause) <= MAX_SENTENCE_CHARS:
            pieces.append(clause)
            continue
        for chunk in _pack(_WORD.findall(clause)):
            pieces.extend(_cut_word(chunk) if _spoken_length(chunk) > MAX_SENTENCE_CHARS else [chunk])
    return pieces


def _pack(parts: list[str]) -> list[str]:
    """Join neighbouring parts with spaces while the result stays short enough.

    Lengths add up (plus one for the space): each part is cleaned once, which keeps this linear
    in the text's length; numbers and abbreviations never span two parts, so the sum is exact
    enough for a limit that is itself a rule of thumb.
    """
    packed: list[str] = []
    current: list[str] = []
    length = 0
    for part in parts:
        part_length = _spoken_length(part)
        if current and length + 1 + part_length > MAX_SENTENCE_CHARS:
            packed.append(" ".join(current))
            current = []
        length = length + 1 + part_length if current else part_length
        current.append(part)
    if current:
        packed.append(" ".join(current))
    return packed


def _cut_word(word: str) -> list[str]:
    """Cut one overlong word (a long number, a run of letters) into short enough pieces."""
    pieces = []
    step = max(1, len(word) * MAX_SENTENCE_CHARS // max(1, _spoken_length(word)))
    start = 0
    while start < len(word):
        size = step
        while size > 1 and _spoken_length(word[start:start + size]) > MAX_SENTENCE_CHARS:
            size //= 2
        pieces.append(word[start:start + size])
        start += size
    return pieces


def _with_terminal_punctuation(piece: str) -> str:
    piece = piece.strip()
    body = piece.rstrip(_CLOSERS)
    if body.endswith(tuple(_TERMINAL)):
        return piece
    if body.endswith((",", ";", ":", "-")):
        return body[:-1].rstrip() + "." + piece[len(body):]
    return piece + "."
