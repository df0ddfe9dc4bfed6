"""A safe SSML subset -> text segments (text, voice, language, pause after) for the chunk planner."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from pipeline.text.normalize import spell_number

# Bounds checked before and while parsing: a row's SSML is data, possibly hostile.
TEXT_FORMATS = ("plain", "ssml")  # how a text is read: input.text_format, a row's text_format, `say --ssml`
MAX_SSML_CHARS = 100_000
MAX_SSML_DEPTH = 32
MAX_BREAK_S = 10.0  # a longer silence inside one text is almost surely a typo ("5000s")
# <break strength=...> without a time; "medium" is about a sentence pause, "strong" a paragraph's.
BREAK_STRENGTH_S = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.2}
DEFAULT_BREAK_STRENGTH = "medium"
# Emphasised text is wrapped in these private-use characters until normalisation is done, then put
# in CAPITALS (Bark reads capitals as emphasis) and the markers dropped: see apply_emphasis.
EMPHASIS_OPEN, EMPHASIS_CLOSE = "\ue000", "\ue001"
_EMPHASIS_SPAN = re.compile(f"{EMPHASIS_OPEN}([^{EMPHASIS_OPEN}{EMPHASIS_CLOSE}]*)(?:{EMPHASIS_CLOSE}|$)")
_MARKERS = re.compile(f"[{EMPHASIS_OPEN}{EMPHASIS_CLOSE}]")
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_PROLOG = re.compile(r"^\s*<\?xml[^>]*\?>")
_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s)\s*$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_PARAGRAPH = "\n\n"
_WRAP_OPEN = "<speak>"
SAY_AS = ("cardinal", "ordinal", "characters", "spell-out", "date", "telephone")
MONTHS = {
    "en": "January February March April May June July August September October November December".split(),
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
}


class SsmlError(ValueError):
    """SSML that cannot be read (malformed, hostile, or a tag used wrongly); the message is one line."""


@dataclass(frozen=True)
class SsmlSegment:
    """A stretch of raw text with one voice and language; voice/language None: the row's own."""

    text: str
    voice: str | None = None  # as written in <voice name="..."> (a speakers name, preset or .npz)
    language: str | None = None
    pause_after_s: float | None = None  # exact silence after it (<break>); None: the usual pause
    paragraph_break_after: bool = False


@dataclass
class SsmlText:
    segments: list[SsmlSegment]
    notes: list[str] = field(default_factory=list)  # tags not honoured, once each


def parse_ssml(text: str, language: str = "en") -> SsmlText:
    """Parse a row's SSML; SsmlError naming the problem for malformed or hostile input.

    The outer <speak> may be left out. No DOCTYPE or ENTITY declaration is accepted (so no
    entity expansion and no external entity), the text is bounded by MAX_SSML_CHARS and the
    nesting by MAX_SSML_DEPTH.
    """
    if not isinstance(text, str):
        raise SsmlError(f"SSML must be a str, got {type(text).__name__}")
    if len(text) > MAX_SSML_CHARS:
        raise SsmlError(f"SSML is {len(text)} characters long (limit {MAX_SSML_CHARS}); split the text")
    if _DECLARATION.search(text):
        raise SsmlError("SSML may not hold a DOCTYPE or ENTITY declaration (entities are refused); remove it")
    # Always wrapped, so the document never has a prolog where a DTD could be declared.
    body = _XML_PROLOG.sub("", text, count=1).replace(EMPHASIS_OPEN, "").replace(EMPHASIS_CLOSE, "")
    parser = ET.XMLParser(target=_BoundedBuilder())
    try:
        parser.feed(f"{_WRAP_OPEN}{body}</speak>")
        root = parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        column = column + 1 - (len(_WRAP_OPEN) if line == 1 else 0)  # 1-based, in the text as the row wrote it
        raise SsmlError(f"SSML is not well-formed: {reason} at line {line}, column {column} (write & as &amp; "
                        "and < as &lt; in text)") from None  # fmt: skip
    builder = _Segments(language)
    builder.walk(root, _Context(None, None, False), depth=0)
    builder.flush(None)
    return SsmlText(builder.segments, list(dict.fromkeys(builder.notes)))


def apply_emphasis(text: str) -> str:
    """Emphasised stretches in CAPITALS, markers removed (run after normalisation and the lexicon)."""
    if EMPHASIS_OPEN not in text and EMPHASIS_CLOSE not in text:
        return text
    return _MARKERS.sub("", _EMPHASIS_SPAN.sub(lambda m: m[1].upper(), text))


def has_words(text: str) -> bool:
    return bool(_MARKERS.sub("", text).strip())


class _BoundedBuilder(ET.TreeBuilder):
    """ElementTree's builder with a nesting bound checked as each tag opens (before any tree walk)."""

    def __init__(self):
        super().__init__()
        self.depth = 0

    def start(self, tag, attrs):
        self.depth += 1
        if self.depth > MAX_SSML_DEPTH + 1:  # +1: the <speak> this module wraps around the text
            raise SsmlError(f"SSML nests deeper than {MAX_SSML_DEPTH} tags; flatten it")
        return super().start(tag, attrs)

    def end(self, tag):
        self.depth -= 1
        return super().end(tag)


@dataclass(frozen=True)
class _Context:
    voice: str | None
    language: str | None
    emphasis: bool


def _local(tag: str) -> str:
    """Tag name without its namespace ("{http://www.w3.org/2001/10/synthesis}break" -> "break")."""
    return tag.rsplit("}", 1)[-1].lower()


def _attr(el: ET.Element, name: str) -> str | None:
    value = el.get(name)
    return value.strip() if isinstance(value, str) else None


class _Segments:
    """Walks the parsed tree, collecting text per (voice, language) and cutting at breaks."""

    def __init__(self, language: str):
        self.language = language  # the row's, for say-as
        self.segments: list[SsmlSegment] = []
        self.notes: list[str] = []
        self.parts: list[str] = []  # the open segment's text
        self.words = False  # the open segment has words (kept as it grows: re-joining parts is quadratic)
        self.at_paragraph = False  # the open segment ends with a paragraph break
        self.key: tuple[str | None, str | None] | None = None

    # -- output --------------------------------------------------------------------------------

    def add(self, text: str | None, ctx: _Context) -> None:
        if not text:
            return
        # Only <p> makes a paragraph: a blank line in SSML is a line end (speaker lines still start lines).
        text = re.sub(r"\s*\n\s*", "\n", text)
        key = (ctx.voice, ctx.language)
        if key != self.key and self.words:
            self.flush(None)
        self.key = key
        self.parts.append(text)
        if has_words(text):
            self.words, self.at_paragraph = True, False

    def paragraph(self) -> None:
        if self.words and not self.at_paragraph:
            self.parts.append(_PARAGRAPH)
            self.at_paragraph = True
        elif not self.words and self.segments:
            self._amend(paragraph=True)

    def flush(self, pause: float | None) -> None:
        """End the open segment; `pause` (a break) goes after it, or after the last one when it is empty."""
        text, brk, words = "".join(self.parts), self.at_paragraph, self.words
        self.parts, self.words, self.at_paragraph = [], False, False
        if words:
            voice, lang = self.key or (None, None)
            self.segments.append(SsmlSegment(text.strip(), voice, lang, pause, brk))
        elif self.segments:
            self._amend(pause=pause, paragraph=brk)
        elif pause:
            self.notes.append("a <break> before any text is ignored (the audio starts with speech)")

    def _amend(self, pause: float | None = None, paragraph: bool = False) -> None:
        last = self.segments[-1]
        total = last.pause_after_s if pause is None else (last.pause_after_s or 0.0) + pause  # breaks add up
        self.segments[-1] = SsmlSegment(last.text, last.voice, last.language, total,
                                        last.paragraph_break_after or paragraph)  # fmt: skip

    # -- the tree ------------------------------------------------------------------------------

    def walk(self, el: ET.Element, ctx: _Context, depth: int) -> None:
        tag = _local(el.tag)
        ctx = self._enter(el, tag, ctx)
        if tag == "break":
            self._break(el)
        elif tag == "sub":
            alias = _attr(el, "alias")
            if alias is None:
                raise SsmlError('<sub> needs an alias attribute: <sub alias="World Wide Web">WWW</sub>')
            self._emit(alias, ctx)
        elif tag == "say-as":
            self._emit(self._say_as(el, ctx), ctx)
        else:
            if tag == "p":
                self.paragraph()
            self._emit(el.text, ctx)
            for child in el:
                self.walk(child, ctx, depth + 1)
                self._emit(child.tail, ctx)
            if tag == "p":
                self.paragraph()
            elif tag == "s":
                self._emit(" ", ctx)

    def _emit(self, text: str | None, ctx: _Context) -> None:
        if text and ctx.emphasis and text.strip():
            text = EMPHASIS_OPEN + text + EMPHASIS_CLOSE
        self.add(text, ctx)

    def _enter(self, el: ET.Element, tag: str, ctx: _Context) -> _Context:
        """The context inside `el`: its voice, language and emphasis; notes for tags not honoured."""
        lang = _attr(el, _XML_NS + "lang")
        if lang is not None and tag in ("speak", "lang", "p", "s", "voice"):
            if not _LANGUAGE.match(lang):
                raise SsmlError(f"xml:lang {lang[:40]!r} is not a language code like 'en' or 'pt-BR'")
            ctx = _Context(ctx.voice, lang, ctx.emphasis)
        if tag == "lang" and lang is None:
            raise SsmlError('<lang> needs an xml:lang attribute: <lang xml:lang="fr">')
        if tag == "voice":
            name = _attr(el, "name")
            if not name:
                raise SsmlError("<voice> needs a name attribute: a speakers name, a preset or an .npz")
            ctx = _Context(name, ctx.language, ctx.emphasis)
        elif tag == "emphasis":
            level = (_attr(el, "level") or "moderate").lower()
            ctx = _Context(ctx.voice, ctx.language, ctx.emphasis or level == "strong")
        elif tag not in ("speak", "p", "s", "lang", "break", "sub", "say-as"):
            self.notes.append(f"<{tag}> is not supported; its text is read as written")
        return ctx

    def _break(self, el: ET.Element) -> None:
        time, strength = _attr(el, "time"), (_attr(el, "strength") or "").lower()
        if time is not None:  # SSML: time wins over strength
            m = _TIME.match(time)
            if not m:
                raise SsmlError(f'<break time={time[:40]!r}> is not a time like "500ms" or "1.5s"')
            seconds = float(m[1]) / (1000.0 if m[2] == "ms" else 1.0)
            if seconds > MAX_BREAK_S:
                raise SsmlError(f"<break time={time!r}> is longer than {MAX_BREAK_S:g} s; split the text instead")
        elif strength:
            if strength not in BREAK_STRENGTH_S:
                raise SsmlError(f"<break strength={strength[:40]!r}> must be one of {', '.join(BREAK_STRENGTH_S)}")
            if strength == "none":
                return  # no boundary at all: the text runs on
            seconds = BREAK_STRENGTH_S[strength]
        else:
            seconds = BREAK_STRENGTH_S[DEFAULT_BREAK_STRENGTH]
        self.flush(seconds)

    def _say_as(self, el: ET.Element, ctx: _Context) -> str:
        kind = (_attr(el, "interpret-as") or "").lower()
        content = "".join(el.itertext()).strip()
        lang = ctx.language or self.language
        if kind in ("cardinal", "ordinal"):
            raw = content if kind == "cardinal" else re.sub(r"(?<=\d)\D+$", "", content)  # "3rd", "3.", "3º"
            words = spell_number(raw, lang, kind)
            if words is None:
                raise SsmlError(f"<say-as interpret-as={kind!r}> holds {content[:40]!r}, which is not a {kind} "
                                f"number that language {lang!r} can spell")  # fmt: skip
            return words
        if kind in ("characters", "spell-out"):
            return " ".join(_character(c, lang) for c in content if not c.isspace())
        if kind == "telephone":
            groups = re.findall(r"\+?\d+", content)
            return ", ".join(" ".join(_character(c, lang) for c in g) for g in groups) or content
        if kind == "date":
            return _date(content, (_attr(el, "format") or "").lower(), lang)
        self.notes.append(f"<say-as interpret-as={kind!r}> is not supported; its text is read as written")
        return content


def _character(c: str, lang: str) -> str:
    if c.isdigit():
        return spell_number(c, lang) or c
    if c == "+":
        return "plus" if lang.lower().startswith("en") else c
    return c.upper()


def _date(content: str, fmt: str, lang: str) -> str:
    """A date's words: "12/25/2024" with format mdy -> "December twenty-fifth, twenty twenty-four" (en)."""
    fields = re.findall(r"\d+", content)
    if not fmt:
        fmt = "ymd" if fields and len(fields[0]) == 4 else ("mdy" if lang.lower().startswith("en") else "dmy")
    if not fmt or set(fmt) - set("dmy") or len(set(fmt)) != len(fmt) or len(fields) != len(fmt):
        raise SsmlError(f"<say-as interpret-as=\"date\" format={fmt!r}> does not fit {content[:40]!r}; use format "
                        "mdy, dmy or ymd (or fewer of d, m, y) with that many numbers")  # fmt: skip
    parts = dict(zip(fmt, fields, strict=True))
    day, month, year = parts.get("d"), parts.get("m"), parts.get("y")
    if (month is not None and not 1 <= int(month) <= 12) or (day is not None and not 1 <= int(day) <= 31):
        raise SsmlError(f'<say-as interpret-as="date"> {content[:40]!r} has no such day or month (format {fmt!r})')
    base = re.split(r"[-_]", lang.lower())[0]
    names = MONTHS.get(base)
    spoken_day = spell_number(day, lang, "ordinal") if day else None
    spoken_month = names[int(month) - 1] if names and month else (spell_number(month, lang) if month else None)
    spoken_year = spell_number(year, lang, "year") if year else None
    if base == "en":  # "December twenty-fifth, twenty twenty-four"
        head = " ".join(p for p in (spoken_month, spoken_day) if p)
        return ", ".join(p for p in (head, spoken_year) if p)
    if base == "de":  # "fünfundzwanzigster Dezember zweitausendvierundzwanzig"
        return " ".join(p for p in ((spoken_day + "r") if spoken_day else None, spoken_month, spoken_year) if p)
    spoken = {"d": spoken_day or day, "m": spoken_month or month, "y": spoken_year or year}
    return " ".join(str(spoken[k]) for k in fmt)
