"""The symbol table of NVIDIA's Tacotron2 (English): 148 symbols, ids are positions in SYMBOLS.

The order is part of every trained checkpoint's embedding matrix, so it must never change:
pad, hyphen, punctuation and space, upper- then lower-case letters, then the CMUdict ARPAbet
phones, each prefixed with '@' so that a phone never collides with a letter.
"""

PAD = "_"
PUNCTUATION = "!'(),.:;? "
SPECIAL = "-"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# The 84 ARPAbet phones of CMUdict: 15 vowels with stress 0/1/2 or none, 24 consonants.
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R",
               "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH")
ARPABET = tuple(sorted([v + s for v in _VOWELS for s in ("", "0", "1", "2")] + list(_CONSONANTS)))

SYMBOLS: tuple[str, ...] = (PAD, *SPECIAL, *PUNCTUATION, *LETTERS, *("@" + p for p in ARPABET))
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}
