"""The text front-end: English text → the symbol ids NVIDIA's Tacotron2 reads.

    normalize("Dr. Smith paid $3.50.")   # 'doctor smith paid three dollars, fifty cents.'
    text_to_sequence("Hello!")          # NVIDIA's ids for ASCII text
    split_sentences(long_text)          # sentences short enough to synthesize one by one

transliterate.py, numbers.py and cleaners.py list where we deliberately differ from NVIDIA.
"""

from tts_desktop.text.cleaners import english_cleaners
from tts_desktop.text.sentences import MAX_SENTENCE_CHARS, split_sentences
from tts_desktop.text.sequence import TextError, normalize, sequence_to_text, text_to_sequence
from tts_desktop.text.symbols import SYMBOLS

__all__ = ["MAX_SENTENCE_CHARS", "SYMBOLS", "TextError", "english_cleaners", "normalize",
           "sequence_to_text", "split_sentences", "text_to_sequence"]
