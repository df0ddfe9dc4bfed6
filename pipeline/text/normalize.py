"""Text normalisation for Bark: whitespace, quotes, dashes, numbers and abbreviations."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache

from num2words import CONVERTER_CLASSES, num2words

# Spans that reach Bark verbatim: bracketed cues ("[laughs]", "[MAN]") and sung
# lyrics between two music notes. The segmenter imports this so both modules agree.
PROTECTED_PATTERN = re.compile(r"\[[^\[\]\n]*\]|♪[^♪]*♪")

# The marker the segmenter sees between paragraphs; every other whitespace run is one space.
PARAGRAPH_BREAK = "\n\n"

# Languages the brief asks for; digits are spelled out only where num2words has a
# converter (0.5.14 lacks zh and hi, so their digits stay digits, which Bark reads).
NUMBER_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "pl", "ru", "tr", "ja", "zh", "ko", "hi")
# Languages writing 1.234,5 rather than 1,234.5.
DECIMAL_COMMA_LANGUAGES = frozenset({"de", "fr", "es", "it", "pt", "pl", "ru", "tr"})
# Languages grouping thousands with a plain space as well: "1 000 €".
SPACE_THOUSANDS_LANGUAGES = frozenset({"fr", "pl", "ru"})
# Languages where num2words' "year" reading is the spoken one (ja gives an era name).
YEAR_LANGUAGES = frozenset({"en", "de"})
# A bare four-digit number in this range is read as a year in YEAR_LANGUAGES.
YEAR_RANGE = (1100, 2099)

CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₩": "KRW"}
PERCENT_WORDS = {
    "en": "percent",
    "de": "Prozent",
    "fr": "pour cent",
    "es": "por ciento",
    "it": "per cento",
    "pt": "por cento",
    "pl": "procent",
    "ru": "процентов",
}
# Word for an en-dash range "1990–1995"; languages not listed keep a hyphen.
RANGE_WORDS = {"en": "to", "de": "bis", "fr": "à", "es": "a", "it": "a", "pt": "a"}
GERMAN_MONTHS = "Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember"

# (abbreviation, spoken form, may end a sentence). When the third field is true and
# the abbreviation is followed by a capital or the end, its period also ended the
# sentence, so one is put back after the expansion.
ABBREVIATIONS = {
    "en": (
        ("Mr.", "Mister", False),
        ("Mrs.", "Missus", False),
        ("Ms.", "Miz", False),
        ("Dr.", "Doctor", False),
        ("Prof.", "Professor", False),
        ("Jr.", "Junior", True),
        ("Sr.", "Senior", True),
        ("vs.", "versus", False),
        ("e.g.", "for example", False),
        ("i.e.", "that is", False),
        ("etc.", "et cetera", True),
        ("approx.", "approximately", False),
    ),
    "de": (
        ("z.B.", "zum Beispiel", False),
        ("z. B.", "zum Beispiel", False),
        ("d.h.", "das heißt", False),
        ("d. h.", "das heißt", False),
        ("usw.", "und so weiter", True),
        ("bzw.", "beziehungsweise", False),
        ("Dr.", "Doktor", False),
        ("Hr.", "Herr", False),
        ("Fr.", "Frau", False),
        ("ca.", "circa", False),
    ),
    "fr": (
        ("M.", "Monsieur", False),
        ("Mme", "Madame", False),
        ("Mlle", "Mademoiselle", False),
        ("Dr", "Docteur", False),
        ("etc.", "et cetera", True),
    ),
    "es": (
        ("Sr.", "Señor", False),
        ("Sra.", "Señora", False),
        ("Dr.", "Doctor", False),
        ("etc.", "etcétera", True),
    ),
    "it": (("Sig.", "Signor", False), ("Dott.", "Dottor", False), ("ecc.", "eccetera", True)),
    "pt": (("Sr.", "Senhor", False), ("Sra.", "Senhora", False), ("Dr.", "Doutor", False)),
}

_QUOTES = str.maketrans(
    {
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "″": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "′": "'",
        "‐": "-",
        "‑": "-",
        "‒": "-",
        "−": "-",
        "―": "—",
        "…": "...",
    }
)
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
_NUM_POINT = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_NUM_COMMA = r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:,\d+)?"
_NUM_SPACE = r"\d{1,3}(?: \d{3})+(?!\d)(?:,\d+)?|" + _NUM_COMMA
# Numbers longer than this (digits with their separators) are left as written: no language has
# words for them, and the number patterns rescan a run from every digit, which is quadratic.
MAX_NUMBER_CHARS = 64
_LONG_NUMBER = re.compile(rf"\d[\d.,]{{{MAX_NUMBER_CHARS},}}")
_LONG_NUMBER_SPACED = re.compile(rf"\d(?:[\d.,]| (?=\d)){{{MAX_NUMBER_CHARS},}}")  # "1 000 000" languages
_ENDS_SENTENCE = re.compile(r"\s*$|\s+[A-ZÀ-Þ]")
_DIGIT = re.compile(r"\d")
NUMBER_WORDS_CACHE = 8192  # numbers remembered with their words, per process (a few MB at most)


def normalize_text(text: str, language: str = "en") -> str:
    """Return `text` ready for Bark; paragraphs are joined by PARAGRAPH_BREAK.

    Cues in brackets, ♪…♪ spans and CAPITALS pass through (only their whitespace
    is collapsed). The em dash "—" is kept: mBERT maps it to [UNK], yet Bark reads it
    as a hesitation, which is what an author's dash means.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    lang = _base_language(language)
    # Thousands written with (narrow) no-break spaces, "1 000", become one number
    # before those spaces turn into ordinary ones.
    text = re.sub(r"(?<=\d)[\u00a0\u202f](?=\d{3}(?!\d))", "", text.replace("\r\n", "\n"))
    # A blank line inside a ♪…♪ span separates stanzas, not paragraphs: the song stays one span.
    spans = protected_spans(text)
    starts = [s for s, _ in spans]
    cuts = [m for m in re.finditer(r"\n[^\S\n]*\n", text) if not _inside(m.start(), spans, starts)]
    bounds = [0, *(p for m in cuts for p in m.span()), len(text)]
    paragraphs = [text[a:b] for a, b in zip(bounds[::2], bounds[1::2], strict=True)]  # (start, end) pairs
    out = []
    for paragraph in paragraphs:
        paragraph = _collapse(paragraph)
        if paragraph:
            out.append(_collapse(_map_plain(paragraph, lambda s: _normalize_plain(s, lang))))
    return PARAGRAPH_BREAK.join(out)


def _inside(pos: int, spans: list[tuple[int, int]], starts: list[int]) -> bool:
    """pos lies strictly inside one of the sorted, disjoint spans (binary search, not a scan)."""
    i = bisect.bisect_left(starts, pos) - 1
    return i >= 0 and spans[i][0] < pos < spans[i][1]


def protected_spans(text: str) -> list[tuple[int, int]]:
    """Return (start, end) of every cue and ♪…♪ span in `text`, in order."""
    return [m.span() for m in PROTECTED_PATTERN.finditer(text)]


def _base_language(language: str) -> str:
    if not isinstance(language, str) or not language.strip():
        raise ValueError(f"language must be a code like 'en' or 'pt-BR', got {language!r}")
    return re.split(r"[-_]", language.strip().lower())[0]


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _map_plain(text: str, fn: Callable[[str], str]) -> str:
    """Apply `fn` to the text between protected spans, leaving the spans as they are."""
    parts, pos = [], 0
    for start, end in protected_spans(text):
        parts.append(fn(text[pos:start]))
        parts.append(text[start:end])
        pos = end
    parts.append(fn(text[pos:]))
    return "".join(parts)


def _normalize_plain(text: str, lang: str) -> str:
    text = text.translate(_QUOTES)
    # "--" is the typewriter em dash; a spaced en dash is the European em dash.
    if "--" in text:  # each `in` test spares a regex pass over the many texts without the character
        text = re.sub(r"-{2,3}", "—", text)
    if "–" in text:
        word = RANGE_WORDS.get(lang)
        text = re.sub(r"(?<=\d)–(?=\d)", f" {word} " if word else "-", text)
        text = text.replace("–", "—")
    text = _expand_abbreviations(text, lang)
    if lang in NUMBER_LANGUAGES and lang in CONVERTER_CLASSES:
        text = _expand_numbers(text, lang)
    return text


def _expand_abbreviations(text: str, lang: str) -> str:
    if lang == "en" and "St." in text:
        # "St. Paul" is a saint, "Baker St." a street.
        text = re.sub(r"(?<![\w.])St\.(?= [A-Z])", "Saint", text)
        text = re.sub(r"(?<![\w.])St\.", "Street", text)
    for abbr, spoken, may_end, pattern in _abbreviation_patterns(lang):
        if abbr not in text:  # a substring test is far cheaper than the pattern's search
            continue

        def repl(m: re.Match, spoken: str = spoken, may_end: bool = may_end) -> str:
            # Matched in place: slicing off the rest of the text per match would be quadratic.
            ends = may_end and _ENDS_SENTENCE.match(m.string, m.end())
            return spoken + "." if ends else spoken

        text = pattern.sub(repl, text)
    return text


@cache
def _abbreviation_patterns(lang: str) -> tuple:
    """(abbreviation, spoken, may end, compiled pattern) per entry of ABBREVIATIONS[lang], compiled once."""
    return tuple(
        (abbr, spoken, may_end, re.compile(r"(?<![\w.])" + re.escape(abbr) + r"(?=[\s,;:!?)]|$)"))
        for abbr, spoken, may_end in ABBREVIATIONS.get(lang, ())
    )


def _expand_numbers(text: str, lang: str) -> str:
    """Spell out numbers, leaving runs longer than MAX_NUMBER_CHARS as written (linear time)."""
    if not _DIGIT.search(text):  # every number pattern starts at a digit
        return text
    parts, pos = [], 0
    long_number = _LONG_NUMBER_SPACED if lang in SPACE_THOUSANDS_LANGUAGES else _LONG_NUMBER
    for m in long_number.finditer(text):
        parts.append(_expand_short_numbers(text[pos : m.start()], lang))
        parts.append(m[0])
        pos = m.end()
    parts.append(_expand_short_numbers(text[pos:], lang))
    return "".join(parts)


def _expand_short_numbers(text: str, lang: str) -> str:
    before, after, percent, cardinal = _number_patterns(lang)
    text = _sub_numbers(before, text, lang, lambda m, v: _currency(v, CURRENCY_SYMBOLS[m[1]], m[1], lang))
    text = _sub_numbers(
        after, text, lang, lambda m, v: _currency(v, CURRENCY_SYMBOLS.get(m[2], m[2]), m[2], lang), group=1
    )
    if "%" in text:
        text = _sub_numbers(percent, text, lang, lambda m, v: _percent(v, lang), group=1)
    text = _expand_ordinals(text, lang)
    return _sub_numbers(
        cardinal, text, lang, lambda m, v: _cardinal(-v if m[1] else v, lang, year_ok=_looks_like_year(m))
    )


@cache
def _number_patterns(lang: str) -> tuple[re.Pattern, re.Pattern, re.Pattern, re.Pattern]:
    """(currency before, currency after, percent, cardinal) patterns of `lang`'s number format, compiled once."""
    num = _NUM_COMMA if lang in DECIMAL_COMMA_LANGUAGES else _NUM_POINT
    num = _NUM_SPACE if lang in SPACE_THOUSANDS_LANGUAGES else num
    symbols = "".join(re.escape(s) for s in CURRENCY_SYMBOLS)
    codes = "|".join(CURRENCY_SYMBOLS.values())
    return (
        re.compile(rf"([{symbols}])\s?({num})"),
        re.compile(rf"({num})\s?([{symbols}]|(?:{codes})\b)"),
        re.compile(rf"({num})\s?%"),
        # A minus sign counts only where a word would start: "-5", not "COVID-19".
        re.compile(rf"((?<![^\s(])-)?({num})"),
    )


def _sub_numbers(pattern: str | re.Pattern, text: str, lang: str, speak: Callable[[re.Match, Decimal], str],
                 group: int = 2) -> str:  # fmt: skip
    """Replace matches whose number (in `group`) stands alone; others stay as written."""

    def repl(m: re.Match) -> str:
        if not _stands_alone(m.string, m.start(), m.end()):
            return m[0]
        value = _parse_number(m[group], lang)
        return m[0] if value is None else speak(m, value)

    return re.sub(pattern, repl, text)


def _expand_ordinals(text: str, lang: str) -> str:
    def ordinal(m: re.Match, v: Decimal) -> str:
        words = _num2words(int(v), lang, "ordinal")
        if words is None:
            return m[0]
        suffix = m[3] if m.lastindex and m.lastindex >= 3 else ""
        if lang == "fr" and int(v) == 1 and suffix in ("re", "ère"):
            return "première"
        if suffix == "ª" and words.endswith("o"):
            return words[:-1] + "a"
        return words

    if lang == "en":
        return _sub_numbers(r"()(\d+)(st|nd|rd|th)\b", text, lang, ordinal)
    if lang == "fr":
        return _sub_numbers(r"()(\d+)(er|re|ère|ème|eme|e)\b", text, lang, ordinal)
    if lang in ("es", "it", "pt"):
        return _sub_numbers(r"()(\d+)\.?([ºª])", text, lang, ordinal)
    if lang == "de":
        # "am 3. Mai": dative after am/vom/zum/im takes "-n" ("am dritten Mai").
        def german(m: re.Match, v: Decimal) -> str:
            words = ordinal(m, v)
            # A bounded look back: the preposition is at most a few characters before the number.
            before = m.string[max(0, m.start() - 16) : m.start()].rstrip().rsplit(" ", 1)[-1].lower()
            return words + "n" if before in ("am", "vom", "zum", "im", "dem", "den") else words

        return _sub_numbers(rf"()(\d{{1,2}})\.(?= (?:{GERMAN_MONTHS})\b)", text, lang, german)
    return text


def _stands_alone(text: str, start: int, end: int) -> bool:
    """False when the number is part of a word ("MP3"), a time or a version ("1.2.3")."""
    for i, step in ((start - 1, -1), (end, 1)):
        if 0 <= i < len(text):
            c = text[i]
            if c.isalnum() and not _is_cjk(c):
                return False
            nxt = i + step
            if c in ".,:/" and 0 <= nxt < len(text) and text[nxt].isdigit():
                return False
    return True


def _is_cjk(c: str) -> bool:
    return any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES)


def _parse_number(raw: str, lang: str) -> Decimal | None:
    if lang in DECIMAL_COMMA_LANGUAGES:
        raw = raw.replace(".", "").replace(" ", "").replace(",", ".")
    else:
        raw = raw.replace(",", "")
    try:
        return Decimal(raw)
    except InvalidOperation:
        return None


def _num2words(value: Decimal | int, lang: str, to: str, **kwargs) -> str | None:
    # Keyed by the number as written: Decimal("3.5") == Decimal("3.50"), yet the two may be read differently.
    return _num2words_written(str(value), isinstance(value, int), lang, to, tuple(sorted(kwargs.items())))


@lru_cache(maxsize=NUMBER_WORDS_CACHE)
def _num2words_written(written: str, whole: bool, lang: str, to: str, kwargs: tuple) -> str | None:
    """num2words of the int or Decimal `written`, remembered: a corpus repeats its years, prices and counts."""
    converter = CONVERTER_CLASSES[lang]
    negword = getattr(converter, "negword", None)
    try:
        return num2words(int(written) if whole else Decimal(written), lang=lang, to=to, **dict(kwargs))
    except (NotImplementedError, KeyError, ValueError, TypeError, OverflowError):
        return None
    finally:
        # num2words 0.5's Portuguese to_currency cuts a letter off its shared "menos " and does not put it
        # back when it raises: without this, "-5" read "meno cinco", then "me cinco", by what came before.
        if negword is not None:
            converter.negword = negword


def _looks_like_year(m: re.Match) -> bool:
    """Four bare digits in YEAR_RANGE, no sign or separators: "1999", not "1,999" or "-1999"."""
    raw = m[2]
    return not m[1] and len(raw) == 4 and raw.isdigit() and YEAR_RANGE[0] <= int(raw) <= YEAR_RANGE[1]


def _cardinal(value: Decimal, lang: str, year_ok: bool = False) -> str:
    is_int = value == value.to_integral_value()
    if year_ok and lang in YEAR_LANGUAGES:
        words = _num2words(int(value), lang, "year")
        if words:
            return words
    words = _num2words(int(value) if is_int else value, lang, "cardinal")
    return words if words is not None else str(value)


def _currency(value: Decimal, code: str, symbol: str, lang: str) -> str:
    if value == value.to_integral_value():
        # Whole amounts: "twelve dollars", not num2words' "twelve dollars, zero cents".
        converter = CONVERTER_CLASSES[lang]
        try:
            unit = converter.pluralize(int(value), converter.CURRENCY_FORMS[code][0])
            return f"{_cardinal(value, lang)} {unit}"
        except (NotImplementedError, KeyError, AttributeError, TypeError, IndexError):
            pass
    words = _num2words(value, lang, "currency", currency=code)
    return words if words is not None else f"{_cardinal(value, lang)} {symbol}"


def _percent(value: Decimal, lang: str) -> str:
    return f"{_cardinal(value, lang)} {PERCENT_WORDS.get(lang, '%')}"


def spell_number(raw: str, language: str, kind: str = "cardinal") -> str | None:
    """Words for one number written as `language` writes it ("1,234.5" in en, "1.234,5" in de).

    kind: cardinal, ordinal (whole numbers only) or year (a year reading where the language has one,
    else cardinal). None when `raw` is not a number or the language has no words for it.
    """
    if kind not in ("cardinal", "ordinal", "year"):
        raise ValueError(f"kind must be cardinal, ordinal or year, got {kind!r}")
    lang = _base_language(language)
    if lang not in CONVERTER_CLASSES:
        return None
    value = _parse_number(raw.strip(), lang)
    if value is None or not value.is_finite():
        return None
    whole = value == value.to_integral_value()
    if kind == "ordinal":
        return _num2words(int(value), lang, "ordinal") if whole and value >= 0 else None
    if kind == "year" and whole and lang in YEAR_LANGUAGES:
        return _num2words(int(value), lang, "year")
    return _num2words(int(value) if whole else value, lang, "cardinal")
