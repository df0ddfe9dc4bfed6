"""Sentence splitting and packing of normalised text into Bark-sized chunks."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import sentencex

from pipeline.text.normalize import PROTECTED_PATTERN

# Chunk limits by default (segment.max_tokens, target_seconds and max_seconds take these): Bark's semantic
# model reads at most 256 text tokens, and speaks at most ~14 s per generation before it runs out of context.
MAX_CHUNK_TOKENS = 256
DEFAULT_MAX_TEXT_CHARS = 100_000  # a row's longest text by default (segment.max_text_chars); a book is split into rows
TARGET_CHUNK_SECONDS = 12.0
MAX_CHUNK_SECONDS = 14.0
# Speaking-rate estimate, by script. Bark reads roughly at conversational speed:
# ~150 words/min of English is ~12 letters/s (spaces not counted); Mandarin runs at
# ~4-5 syllables/s with one Han character per syllable; Japanese at ~7 morae/s with
# about one kana per mora (a kanji averages ~2 morae, so it counts as two kana);
# Korean at ~5 Hangul syllable blocks/s.
ALPHABETIC_CHARS_PER_S = 12.0
HAN_CHARS_PER_S = 4.5
KANA_CHARS_PER_S = 7.0
HANGUL_CHARS_PER_S = 5.0
JAPANESE_KANJI_MORAE = 2.0
# Pauses Bark makes at punctuation, and the length of a non-verbal cue.
SENTENCE_PAUSE_S = 0.3
CLAUSE_PAUSE_S = 0.15
CUE_SECONDS = 1.0
# Sung text is slower than spoken text.
SUNG_SLOWDOWN = 1.5

# Conservative mBERT token estimate when no counter is given: WordPiece splits
# every punctuation mark and every Han character into its own token and a rare
# word into pieces of ~2-4 letters; counting one token per 2 letters stays above
# the real count for ordinary prose in the languages we serve.
LETTERS_PER_TOKEN_ESTIMATE = 2

_SENTENCE_END = "。！？!?."
_CLAUSE_MARKS = ",;:、，；：—"
# The scripts _script tells apart, as regex classes (one pass over a text counts each).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_KANA = "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = "\u1100-\u11ff\uac00-\ud7af"
_HAN_CHAR = re.compile(f"[{_HAN}]")
_KANA_CHAR = re.compile(f"[{_KANA}]")
_HANGUL_CHAR = re.compile(f"[{_HANGUL}]")
_NOT_ALPHABETIC = re.compile(f"[{_HAN}{_KANA}{_HANGUL}]+")
_FIRST_SCRIPT_CHAR = "\u1100"  # the lowest character of the three classes above
_SENTENCE_END_CHAR = re.compile(f"[{re.escape(_SENTENCE_END)}]")
_CLAUSE_MARK_CHAR = re.compile(f"[{re.escape(_CLAUSE_MARKS)}]")
_NOT_ALNUM = re.compile(r"[\W_]+")  # what it leaves is exactly the characters str.isalnum accepts
# ASCII characters that are not letters or digits, deleted by str.translate (its ASCII fast path).
_ASCII_NOT_ALNUM = dict.fromkeys(c for c in range(128) if not chr(c).isalnum())
_CLAUSE_CUT = re.compile(r"[,;:—]\s+|[、，；：]\s*")
_PARAGRAPH_SEP = re.compile(r"\n[^\S\n]*\n\s*")


@dataclass(frozen=True)
class Chunk:
    """One synthesis unit. `text == source[start:end]` of the text that was split."""

    text: str
    index: int
    paragraph_break_after: bool
    est_seconds: float
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class _Limits:
    count_tokens: Callable[[str], int]
    max_tokens: int
    target_seconds: float
    max_seconds: float

    def fits(self, text: str, seconds: float) -> bool:
        # A token covers at least one character (a WordPiece, an [UNK] word, estimate_tokens' runs): a text
        # no longer than max_tokens fits without being tokenized, which spares most sentences the tokenizer.
        if estimate_seconds(text) > seconds:
            return False
        return len(text) <= self.max_tokens or self.count_tokens(text) <= self.max_tokens


def split_into_chunks(
    text: str,
    *,
    language: str = "en",
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int = MAX_CHUNK_TOKENS,
    target_seconds: float = TARGET_CHUNK_SECONDS,
    max_seconds: float = MAX_CHUNK_SECONDS,
) -> list[Chunk]:
    """Split normalised `text` (see normalize.normalize_text) into chunks.

    Whole sentences are packed up to `target_seconds`; a sentence over `max_seconds`
    or `max_tokens` is cut at clauses, then at words (between characters for Han and
    kana). Cues `[...]` and `♪…♪` spans are never cut, nor is a word; one that alone
    breaks a limit raises ValueError. Chunks never span a paragraph break.
    Invariant: the chunks are in-order slices of `text` separated only by whitespace.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(language, str) or not language.strip():
        raise ValueError(f"language must be a code like 'en' or 'zh', got {language!r}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    if not 0 < target_seconds <= max_seconds:
        raise ValueError(
            f"need 0 < target_seconds <= max_seconds, got target_seconds={target_seconds!r}, "
            f"max_seconds={max_seconds!r}"
        )
    if count_tokens is not None and not callable(count_tokens):
        raise ValueError(f"count_tokens must be a callable(str) -> int or None, got {count_tokens!r}")
    limits = _Limits(count_tokens or estimate_tokens, max_tokens, target_seconds, max_seconds)
    spans = [m.span() for m in PROTECTED_PATTERN.finditer(text)]
    ranges: list[tuple[int, int, bool]] = []
    for p_start, p_end in _paragraphs(text, spans):
        pieces = []
        for s, e in _sentences(text, p_start, p_end, language, spans):
            pieces.extend(_fit(text, s, e, spans, limits, level=0))
        packed = _pack(text, pieces, limits)
        ranges.extend((s, e, i == len(packed) - 1) for i, (s, e) in enumerate(packed))
    return [
        Chunk(text[s:e], i, brk and i < len(ranges) - 1, estimate_seconds(text[s:e]), s, e)
        for i, (s, e, brk) in enumerate(ranges)
    ]


def estimate_seconds(text: str) -> float:
    """Seconds Bark is expected to take to say `text`, from its characters (see the rates above)."""
    if "[" not in text and "♪" not in text:  # most texts hold no cue: no span to look for
        return round(_spoken_seconds(text), 3)
    seconds = 0.0
    pos = 0
    for m in PROTECTED_PATTERN.finditer(text):
        seconds += _spoken_seconds(text[pos : m.start()])
        span = m[0]
        seconds += CUE_SECONDS if span.startswith("[") else SUNG_SLOWDOWN * _spoken_seconds(span)
        pos = m.end()
    return round(seconds + _spoken_seconds(text[pos:]), 3)


def estimate_tokens(text: str) -> int:
    """A conservative stand-in for the engine's count_text_tokens (mBERT, no specials)."""
    tokens = 0
    for m in re.finditer(r"[^\W\d_]+|\d+|\S", text):
        run = m[0]
        if len(run) == 1 or _script(run[0]) != "alphabetic":
            tokens += len(run)
        else:
            tokens += math.ceil(len(run) / LETTERS_PER_TOKEN_ESTIMATE)
    return tokens


def _spoken_seconds(text: str) -> float:
    """Each character's time by its script (see _script), counted with C-speed string scans."""
    if text.isascii():
        letters = len(text.translate(_ASCII_NOT_ALNUM))
        ends = text.count(".") + text.count("!") + text.count("?")
        clauses = text.count(",") + text.count(";") + text.count(":")
        return letters / ALPHABETIC_CHARS_PER_S + ends * SENTENCE_PAUSE_S + clauses * CLAUSE_PAUSE_S
    han = kana = hangul = 0
    rest = text
    if max(text) >= _FIRST_SCRIPT_CHAR:  # else a Latin, Cyrillic, Greek... text: only letters count
        han, kana, hangul = (len(p.findall(text)) for p in (_HAN_CHAR, _KANA_CHAR, _HANGUL_CHAR))
        rest = _NOT_ALPHABETIC.sub("", text)
    letters = len(_NOT_ALNUM.sub("", rest))
    ends = len(_SENTENCE_END_CHAR.findall(rest))
    clauses = len(_CLAUSE_MARK_CHAR.findall(rest))
    # Japanese reads a kanji as about two morae; a text with no kana is Chinese.
    han_seconds = JAPANESE_KANJI_MORAE / KANA_CHARS_PER_S if kana else 1.0 / HAN_CHARS_PER_S
    return (
        letters / ALPHABETIC_CHARS_PER_S
        + han * han_seconds
        + kana / KANA_CHARS_PER_S
        + hangul / HANGUL_CHARS_PER_S
        + ends * SENTENCE_PAUSE_S
        + clauses * CLAUSE_PAUSE_S
    )


def _script(c: str) -> str:
    o = ord(c)
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F:
        return "han"
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "kana"
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF:
        return "hangul"
    return "alphabetic"


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    """True when a cut at `pos` would fall strictly inside a protected span."""
    return any(s < pos < e for s, e in spans)


def _past_span(pos: int, spans: list[tuple[int, int]]) -> int:
    return next((e for s, e in spans if s < pos < e), pos)


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _split_at(text: str, s: int, e: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [s, *cuts, e]
    pieces = [_strip(text, a, b) for a, b in pairwise(bounds)]
    return [(a, b) for a, b in pieces if a < b]


def _paragraphs(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # A blank line inside a ♪…♪ span (a song's stanzas) is not a paragraph break.
    cuts = [m.start() for m in _PARAGRAPH_SEP.finditer(text) if not _inside(m.start(), spans)]
    return _split_at(text, 0, len(text), cuts)


def _sentences(text: str, s: int, e: int, language: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # A boundary inside a span moves to its end: a splitter may open the next sentence
    # with a song's closing ♪, which belongs to the sentence before.
    starts = sorted({_past_span(s + b, spans) for b in _sentence_starts(text[s:e], language)})
    cuts = [b for b in starts if s < b < e and not _in_word(text, b)]
    return _split_at(text, s, e, cuts)


def _sentence_starts(paragraph: str, language: str) -> list[int]:
    """Offsets where sentences begin, from sentencex (Wikimedia's rule-based splitter, linear time).

    sentencex knows ~300 languages and falls back to its generic rules for any other code; an offset
    it gives before whitespace moves onto the sentence's first character.
    """
    lang = language.lower().replace("_", "-").split("-")[0]
    starts = []
    for boundary in sentencex.get_sentence_boundaries(lang, paragraph):
        start = boundary["start_index"]
        while start < len(paragraph) and paragraph[start].isspace():
            start += 1
        starts.append(start)
    return starts


def _in_word(text: str, pos: int) -> bool:
    a, b = text[pos - 1], text[pos]
    return a.isalnum() and b.isalnum() and _script(a) == _script(b) == "alphabetic"


def _cut_points(text: str, s: int, e: int, level: int) -> list[int]:
    if level == 0:
        return [m.end() for m in _CLAUSE_CUT.finditer(text, s, e)]
    cuts = [m.end() for m in re.finditer(r"\s+", text[s:e])]
    # Han and kana are written without spaces: a cut between two of them is a word
    # boundary as good as we can find without a dictionary.
    cuts += [
        i - s
        for i in range(s + 1, e)
        if _script(text[i - 1]) in ("han", "kana") and _script(text[i]) in ("han", "kana")
    ]
    return sorted(s + c for c in cuts)


def _fit(text: str, s: int, e: int, spans: list[tuple[int, int]], limits: _Limits, level: int) -> list[tuple[int, int]]:
    """Cut text[s:e] into pieces each within max_seconds and max_tokens."""
    if limits.fits(text[s:e], limits.max_seconds):
        return [(s, e)]
    if level > 1:
        raise ValueError(
            f"cannot split {text[s:e][:60]!r}... ({limits.count_tokens(text[s:e])} tokens, "
            f"~{estimate_seconds(text[s:e]):.1f} s) to fit max_tokens={limits.max_tokens} and "
            f"max_seconds={limits.max_seconds}: a cue, ♪…♪ span or word this long must be shortened"
        )
    cuts = [c for c in _cut_points(text, s, e, level) if s < c < e and not _inside(c, spans)]
    # Pieces come back as small as the cuts make them; _pack merges them up to the target.
    out = []
    for a, b in _split_at(text, s, e, cuts):
        out.extend(_fit(text, a, b, spans, limits, level + 1))
    return out


def _pack(text: str, pieces: list[tuple[int, int]], limits: _Limits) -> list[tuple[int, int]]:
    """Greedily merge consecutive pieces while the merged text stays within the target."""
    out: list[tuple[int, int]] = []
    for s, e in pieces:
        if out and limits.fits(text[out[-1][0] : e], limits.target_seconds):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out
