"""Numbers → words, as NVIDIA's Tacotron2 `english_cleaners` says them, plus a few improvements.

Runs on lower-cased ASCII text (the currency signs £ € ¥ aside). The steps and their order are
NVIDIA's: commas inside numbers removed, money, decimals ("12.25" → "twelve point twenty-five"),
ordinals ("103rd" → "one hundred and third"), then every other digit run: 1001–2999 read as
years ("1999" → "nineteen ninety-nine", "2005" → "two thousand five", "1900" → "nineteen
hundred"), the rest as cardinals ("1000000" → "one million"). The words are exactly those of
`inflect` with NVIDIA's arguments, commas between thousands included, which matter because a
comma is a symbol the model reads.

We spell the words ourselves rather than calling `inflect`: importing it takes about three seconds
(it decorates every function with run-time type checks), which every start of the app and CLI
would pay. tests/data/nvidia_text_ids.json holds NVIDIA's own output over thousands of numbers,
and the tests hold us to it.

Deliberate improvements over NVIDIA (each differs from its output only where it was wrong):
- clock times: "9:05" → "nine:oh five" (NVIDIA: "nine:five"), "10:00" → "ten o'clock"
  (NVIDIA: "ten:zero"), "14:00" → "fourteen hundred"; "am"/"pm" after a number or a time
  ("9pm", "9:30 PM") → "a.m."/"p.m.". A time with minutes 10–59 keeps NVIDIA's
  "twelve:fifty-two": LJSpeech's transcripts write clock times that way, so the model knows it.
- pounds, euros and yen: "£5" → "five pounds", "£2.50" → "two pounds, fifty pence",
  "€1" → "one euro", "¥300" → "three hundred yen"; a lone sign is read as its name.
  NVIDIA drops "£" before its pound rule can see it.
- money with a scale word: "$1.5 million" → "one point five million dollars"
  (NVIDIA: "one dollar, five cents million").
- one digit of cents is tenths: "$3.5" → "three dollars, fifty cents" (NVIDIA: "five cents");
  more than two digits after the point are read as a decimal amount.
- a decimal part with a leading zero is read digit by digit: "3.05" → "three point zero five"
  (NVIDIA: "three point five", which is a different number).
- digit runs too long for words (more than 36 significant digits, where NVIDIA crashes) are read
  digit by digit.
- signs that belong to a number: "-5" → "minus five" (not inside "3-4" or "2024-12-25"), "#1" →
  "number one", "2 + 2 = 4" → "two plus two equals four", "5 - 3" → "five minus three" (between
  numbers only; NVIDIA drops "#", "+" and "=" and reads the hyphen as a hyphen).
- units after a number: "5 kg" → "five kilograms", "1 km" → "one kilometer", "60 mph" → "sixty
  miles per hour", "3.5 GB" → "three point five gigabytes" (NVIDIA reads "kg" as letters or runs
  "5kg" together: "fivekg"). Only unambiguous symbols, only right after a number; an abbreviation's
  period inside a sentence goes ("6 ft. tall" → "six feet tall").
- simple fractions written with a slash (a one-digit numerator below a denominator of 2 to 10):
  "1/2" → "one half", "3/4" → "three quarters", "2 1/2" → "two and a half" (NVIDIA drops the slash:
  "onetwo"). Other slashes between numbers are word breaks (cleaners.py): "12/25/2024" → "twelve
  twenty-five twenty twenty-four", "24/7" → "twenty-four seven".
"""

from __future__ import annotations

import re
from functools import lru_cache

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ("", " thousand", " million", " billion", " trillion", " quadrillion", " quintillion",
           " sextillion", " septillion", " octillion", " nonillion", " decillion")
MAX_DIGITS_AS_WORDS = 3 * len(_SCALES)  # 36: inflect's range, beyond it we read digits

_IRREGULAR_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                       "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

_CURRENCIES = {  # sign: (one unit, units, one hundredth, hundredths)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
}
_SCALE_WORDS = "thousand|million|billion|trillion"

# Not inside a longer run of digits, colons, commas or decimals ("1:23:45", "3.12:30").
_CLOCK = re.compile(r"(?<![\d:])(?<!\d[.,])(\d{1,2}):(\d\d)(?![\d:]|[.,]\d)(?:\s?([ap])\.?m\b\.?)?")
_AM_PM = re.compile(r"(?<=\d)\s?([ap])\.?m\b\.?")
_COMMA_GROUPED = re.compile(r"[0-9][0-9,]+[0-9]")
_MONEY_WITH_SCALE = re.compile(rf"([$£€¥])([0-9.,]*[0-9]) ({_SCALE_WORDS})\b")
_MONEY = re.compile(r"([$£€¥])([0-9.,]*[0-9])")
_LONE_CURRENCY = re.compile(r"([£€¥])")
# NVIDIA's patterns, anchored at the start of a digit run: the same matches, but linear time
# (unanchored, a long run of digits makes each of them quadratic).
_DECIMAL = re.compile(r"(?<![0-9])([0-9]+)\.([0-9]+)")
_ORDINAL = re.compile(r"(?<![0-9])[0-9]+(?:st|nd|rd|th)")
_NUMBER = re.compile(r"[0-9]+")
# unit symbol: (one, many). Not "m", "in", "s", "g" or "t": words, or more than one unit.
_UNITS = {
    "mm": ("millimeter", "millimeters"), "cm": ("centimeter", "centimeters"), "km": ("kilometer", "kilometers"),
    "mg": ("milligram", "milligrams"), "kg": ("kilogram", "kilograms"), "ml": ("milliliter", "milliliters"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"), "mi": ("mile", "miles"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"), "gb": ("gigabyte", "gigabytes"),
    "tb": ("terabyte", "terabytes"),
    "hz": ("hertz", "hertz"), "khz": ("kilohertz", "kilohertz"), "mhz": ("megahertz", "megahertz"),
    "ghz": ("gigahertz", "gigahertz"), "kw": ("kilowatt", "kilowatts"), "kwh": ("kilowatt hour", "kilowatt hours"),
    "min": ("minute", "minutes"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "sec": ("second", "seconds"),
}
_UNIT = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?) ?(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
                   + r")(?:\.(?= [a-z0-9])|(?![a-z0-9/]))")  # "6 ft. tall": the abbreviation's period goes
_MINUS = re.compile(r"(?<![\w.,)\]-])-(?=\.?\d)")       # "-5", "(-3)", not "3-4" or "a-5"
_NUMBER_SIGN = re.compile(r"#(?=\d)")
_ARITHMETIC = re.compile(r"(?<=\d)(?: ?([+=]) ?| - )(?=[-#]?\.?\d)")  # a spaced " - " only: "3-4" stays
# "3/4", "2 1/2": a one-digit numerator over 2..10, not part of a date or a longer run ("1/2/2024",
# "24/7", "1/2.5")
_FRACTION = re.compile(r"(?<![\d/.,])(?:(\d+) )?(\d)/(10|[2-9])(?![\d/]|[.,]\d)")
_DENOMINATORS = {2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters"),
                 5: ("fifth", "fifths"), 6: ("sixth", "sixths"), 7: ("seventh", "sevenths"),
                 8: ("eighth", "eighths"), 9: ("ninth", "ninths"), 10: ("tenth", "tenths")}
_LAST_WORD = re.compile(r"[a-z]+$")


def _below_thousand(n: int, andword: str) -> str:
    hundreds, rest = divmod(n, 100)
    words = []
    if hundreds:
        words.append(_ONES[hundreds] + " hundred")
        if rest and andword:
            words.append(andword)
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + ("-" + _ONES[ones] if ones else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def _digits_one_by_one(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def cardinal(digits: str, andword: str = "") -> str:
    """'1234567' → 'one million, two hundred thirty-four thousand, five hundred sixty-seven'.

    inflect's wording: groups of three joined by ", ", except that a last group made of a single
    word ("one", "twenty-one") joins with a space (or " and " when `andword` is "and").
    """
    significant = digits.lstrip("0")
    if not significant:
        return "zero"
    if len(significant) > MAX_DIGITS_AS_WORDS:
        return _digits_one_by_one(digits)
    return _cardinal_words(int(significant), andword)


@lru_cache(maxsize=8192)
def _cardinal_words(n: int, andword: str) -> str:
    groups = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_below_thousand(group, andword) + _SCALES[scale])
        scale += 1
    groups.reverse()
    if len(groups) > 1 and " " not in groups[-1]:
        last = groups.pop()
        joiner = f" {andword} " if andword else " "
        return ", ".join(groups) + joiner + last
    return ", ".join(groups)


def ordinal(digits: str) -> str:
    """'103' → 'one hundred and third' (inflect's ordinals keep its default 'and')."""
    words = cardinal(digits, andword="and")
    last = _LAST_WORD.search(words).group(0)
    if last in _IRREGULAR_ORDINALS:
        tail = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        tail = last[:-1] + "ieth"
    else:
        tail = last + "th"
    return words[: len(words) - len(last)] + tail


def _year_or_cardinal(digits: str) -> str:
    significant = digits.lstrip("0")
    if len(significant) != 4:
        return cardinal(digits)
    n = int(significant)
    if not 1000 < n < 3000:
        return cardinal(digits)
    if n == 2000:
        return "two thousand"
    if 2000 < n < 2010:
        return "two thousand " + _ONES[n % 100]
    century, rest = divmod(n, 100)
    if rest == 0:
        return cardinal(str(century)) + " hundred"
    return cardinal(str(century)) + " " + (f"oh {_ONES[rest]}" if rest < 10 else cardinal(str(rest)))


def _spell_clock(m: re.Match) -> str:
    hour, minute, meridiem = int(m.group(1)), int(m.group(2)), m.group(3)
    if hour > 23 or minute > 59:
        return m.group(0)  # not a time: leave it to the plain number rules
    hour_words = cardinal(str(hour))
    suffix = f" {meridiem}.m." if meridiem else ""
    if minute == 0:
        if meridiem:
            return hour_words + suffix
        return hour_words + (" o'clock" if 1 <= hour <= 12 else " hundred")
    minute_words = f"oh {_ONES[minute]}" if minute < 10 else cardinal(str(minute))
    return f"{hour_words}:{minute_words}{suffix}"


def _spell_hundredths(digits: str) -> int:
    return int(digits) * 10 if len(digits) == 1 else int(digits)


def _money(sign: str, amount: str) -> str:
    one, many, one_minor, many_minor = _CURRENCIES[sign]
    parts = amount.replace(",", "").split(".")
    if len(parts) > 2:
        return f"{amount} {many}"  # "$1.2.3": not an amount; NVIDIA's fallback
    whole, fraction = parts[0], parts[1] if len(parts) > 1 else ""
    if len(fraction) > 2 or (fraction and one_minor is None):
        return f"{whole or '0'}.{fraction} {many}"
    units = int(whole) if whole else 0
    hundredths = _spell_hundredths(fraction) if fraction else 0
    spoken = []
    if units or not hundredths:
        spoken.append(f"{whole or '0'} {one if units == 1 else many}")
    if hundredths:
        spoken.append(f"{hundredths} {one_minor if hundredths == 1 else many_minor}")
    if not units and not hundredths:
        return f"zero {many}"
    return ", ".join(spoken)


def _money_with_scale(m: re.Match) -> str:
    return f"{m.group(2).replace(',', '')} {m.group(3)} {_CURRENCIES[m.group(1)][1]}"


def _decimal(m: re.Match) -> str:
    fraction = m.group(2)
    if len(fraction) > 1 and fraction.startswith("0"):
        return f"{m.group(1)} point {_digits_one_by_one(fraction)}"
    return f"{m.group(1)} point {fraction}"


def _fraction(m: re.Match) -> str:
    whole, num, den = m.group(1), int(m.group(2)), int(m.group(3))
    if not 0 < num < den:
        return m.group(0)  # "5/4", "0/3": not read as a fraction; the slash becomes a word break
    one, many = _DENOMINATORS[den]
    if whole is None:
        return f"{_ONES[num]} {one if num == 1 else many}"
    return f"{whole} and {'a ' + one if num == 1 else _ONES[num] + ' ' + many}"


def _lone_currency(m: re.Match) -> str:
    return f" {_CURRENCIES[m.group(1)][1]} "


def normalize_numbers(text: str) -> str:
    """Spell every number in lower-cased ASCII `text` as words."""
    if "/" in text:
        text = _FRACTION.sub(_fraction, text)
    text = _ARITHMETIC.sub(lambda m: {"+": " plus ", "=": " equals ", None: " minus "}[m.group(1)], text)
    text = _MINUS.sub("minus ", text)
    text = _NUMBER_SIGN.sub("number ", text)
    text = _CLOCK.sub(_spell_clock, text)
    text = _AM_PM.sub(lambda m: f" {m.group(1)}.m.", text)
    text = _COMMA_GROUPED.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _UNIT.sub(lambda m: f"{m.group(1)} {_UNITS[m.group(2)][m.group(1) != '1']}", text)
    text = _MONEY_WITH_SCALE.sub(_money_with_scale, text)
    text = _MONEY.sub(lambda m: _money(m.group(1), m.group(2)), text)
    text = _LONE_CURRENCY.sub(_lone_currency, text)
    text = _DECIMAL.sub(_decimal, text)
    text = _ORDINAL.sub(lambda m: ordinal(m.group(0)[:-2]), text)
    return _NUMBER.sub(lambda m: _year_or_cardinal(m.group(0)), text)
