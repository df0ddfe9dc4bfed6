"""Turning one raw manifest row into checked values, or the sentence that says why it cannot be spoken.

Nothing here raises for a bad value: a poison row (a seed of +inf, invalid UTF-8, a list where a
number belongs) becomes that row's error and the run goes on.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from pipeline.manifest.columns import id_issue
from pipeline.text.lexicon import parse_lexicon
from pipeline.text.segment import DEFAULT_MAX_TEXT_CHARS
from pipeline.text.ssml import TEXT_FORMATS

# Seeds feed numpy/torch generators, which take unsigned 63-bit values at most.
MAX_SEED = 2**63 - 1
# A language code as the segmenter and normaliser take it: "en", "pt-BR", "zh_Hant".
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
# Unicode categories that make no sound on their own: controls, format (zero-width), unassigned,
# private use, surrogates, separators and combining marks. Letters, digits, symbols and punctuation speak.
_SILENT_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Mc", "Me"})


class Undecodable(bytes):
    """Bytes from a string or binary column that are not valid UTF-8 (kept so the error can show them)."""

    def __repr__(self) -> str:
        return repr(self.decode("utf-8", "backslashreplace"))


def decode(value: Any) -> Any:
    """str for UTF-8 bytes, Undecodable for other bytes, anything else unchanged."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return Undecodable(raw)
    return value


def table_rows(table) -> list[dict]:
    """Rows of an Arrow table as dicts; string and binary columns decoded per value, never failing.

    `Table.to_pylist()` decodes every string at once and one invalid UTF-8 value fails the batch;
    reading such columns as binary first moves the failure to the row that holds it.
    """
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type.value_type if pat.is_dictionary(column.type) else column.type
        if pat.is_dictionary(column.type):
            column = column.cast(kind)
        if pat.is_string(kind) or pat.is_large_string(kind):
            # A reinterpretation of the same buffers: string -> binary does not validate UTF-8.
            column = column.cast(pa.large_binary() if pat.is_large_string(kind) else pa.binary())
            columns[name] = [decode(v) for v in column.to_pylist()]
        elif pat.is_binary(kind) or pat.is_large_binary(kind):
            columns[name] = [decode(v) for v in column.to_pylist()]
        else:
            columns[name] = column.to_pylist()
    names = list(columns)
    if not names:
        return [{}] * table.num_rows
    # strict: every column of a table holds num_rows values, and each row one value per name
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


@dataclass(frozen=True)
class RowValues:
    """A row's checked values; None means "not given, use the config default"."""

    id: str
    text: str
    voice: str | None = None
    seed: int | None = None
    language: str | None = None
    text_temp: float | None = None
    waveform_temp: float | None = None
    max_duration: float | None = None
    text_format: str | None = None  # "plain" | "ssml"; None: input.text_format
    lexicon: str | None = None  # the row's own lexicon lines (word<TAB>respelling), over generation.lexicon


def parse_row(raw: dict, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> tuple[RowValues | None, str | None]:
    """(values, None) for a usable row, (None, sentence) otherwise; never raises for any input value."""
    values, issue = parse_row_issue(raw, max_text_chars)
    return values, None if issue is None else issue[1]


def parse_row_issue(
    raw: dict, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
) -> tuple[RowValues | None, tuple[str, str] | None]:
    """parse_row with the problem's kind too: (None, (kind, sentence)); rows of one kind are reported together."""
    try:
        return _parse(raw, max_text_chars)
    except _Bad as bad:
        return None, (bad.kind, str(bad))
    except Exception as exc:  # a value type nobody foresaw: still this row's problem only
        return None, ("cannot be read", f"row cannot be read ({type(exc).__name__}: {_short(exc)})")


class _Bad(Exception):
    """A row problem; its message is the sentence the user sees, its kind groups rows ("have empty text")."""

    def __init__(self, message: str, kind: str = "cannot be read"):
        super().__init__(message)
        self.kind = kind


def _parse(raw: dict, max_text_chars: int) -> tuple[RowValues, None]:
    row_id = _id(decode(raw.get("id")))
    text = _text(decode(raw.get("text")), max_text_chars)
    seed = _number(raw.get("seed"), "seed", "an integer >= 0")
    if seed is not None:
        if seed != math.floor(seed) or not 0 <= seed <= MAX_SEED:
            raise _Bad(f"seed {_show(seed)} is invalid; use an integer from 0 to 2**63-1 or leave it empty",
                       "have an invalid seed")  # fmt: skip
        seed = int(seed)
    text_temp = _number(raw.get("text_temp"), "text_temp", "a number >= 0")
    waveform_temp = _number(raw.get("waveform_temp"), "waveform_temp", "a number >= 0")
    for name, value in (("text_temp", text_temp), ("waveform_temp", waveform_temp)):
        if value is not None and value < 0:
            raise _Bad(
                f"{name} {_show(value)} is invalid; use a number >= 0 or leave it empty", f"have an invalid {name}"
            )
    max_duration = _number(raw.get("max_duration"), "max_duration", "seconds > 0")
    if max_duration is not None and max_duration <= 0:
        raise _Bad(f"max_duration {_show(max_duration)} is invalid; use seconds > 0 or leave it empty",
                   "have an invalid max_duration")  # fmt: skip
    values = RowValues(
        id=row_id,
        text=text,
        voice=_optional_text(raw.get("voice"), "voice"),
        seed=seed,
        language=_language(raw.get("language")),
        text_temp=_float(text_temp),
        waveform_temp=_float(waveform_temp),
        max_duration=_float(max_duration),
        text_format=_text_format(raw.get("text_format")),
        lexicon=_row_lexicon(raw.get("lexicon")),
    )
    return values, None


def chunk_seconds_cap(value: Any, default: float | None) -> float:
    """Most audio seconds one chunk of a row gets: its max_duration when usable, else the config's, else inf."""
    try:
        cap = _number(value, "max_duration", "seconds > 0")
    except _Bad:
        cap = None  # the run makes this row an error row; the plan just does not cap it
    cap = cap if cap is not None and cap > 0 else default
    return math.inf if cap is None else float(cap)


def _id(value: Any) -> str:
    issue = id_issue(value)
    if issue:
        raise _Bad(issue[1], issue[0])
    return value


def _text(value: Any, max_chars: int) -> str:
    if value is None:
        raise _Bad("text is missing (null); fill the text column or drop the row", "have no text (null)")
    if isinstance(value, Undecodable):
        raise _Bad(
            f"text is not valid UTF-8 (first bad byte at offset {_bad_offset(value)}); "
            "re-encode the text column as UTF-8",
            "have text that is not valid UTF-8",
        )
    if not isinstance(value, str):
        raise _Bad(
            f"text must be a string, got {type(value).__name__}; fix the text column", "have text that is not a string"
        )
    if len(value) > max_chars:
        raise _Bad(
            f"text is {len(value)} characters long (limit segment.max_text_chars={max_chars}); "
            "split the row in the manifest or raise the limit",
            "have text longer than segment.max_text_chars",
        )
    if not value.strip():
        raise _Bad("text is empty; fill the text column or drop the row", "have empty text")
    if not speakable(value):
        raise _Bad(
            "text has nothing speakable (only control, zero-width or combining characters); "
            "fix the text or drop the row",
            "have text with nothing speakable",
        )
    return value


def speakable(text: str) -> bool:
    """True when text holds at least one letter, digit, symbol or punctuation mark."""
    return any(unicodedata.category(ch) not in _SILENT_CATEGORIES for ch in text)


def _number(value: Any, name: str, wanted: str) -> float | int | None:
    """None for null/NaN, the number for finite int/float values; _Bad for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _Bad(f"{name} {_show(value)} is not a number; use {wanted} or leave it empty", f"have an invalid {name}")
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    if math.isnan(value):
        return None  # pandas writes a missing number as NaN
    if math.isinf(value):
        raise _Bad(f"{name} {_show(value)} is invalid; use {wanted} or leave it empty", f"have an invalid {name}")
    return value


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _optional_text(value: Any, name: str) -> str | None:
    value = decode(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, Undecodable):
        raise _Bad(
            f"{name} {value!r} is not valid UTF-8; re-encode the {name} column as UTF-8", f"have an invalid {name}"
        )
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string, got {type(value).__name__}", f"have an invalid {name}")
    return value.strip() or None


def _language(value: Any) -> str | None:
    value = _optional_text(value, "language")
    if value is not None and not _LANGUAGE.match(value):
        raise _Bad(f"language {_show(value)} is not a language code like 'en' or 'pt-BR'", "have an invalid language")
    return value


def _text_format(value: Any) -> str | None:
    value = _optional_text(value, "text_format")
    if value is not None and value.lower() not in TEXT_FORMATS:
        raise _Bad(f"text_format {_show(value)} is not one of {', '.join(TEXT_FORMATS)}; fix it or leave it empty",
                   "have an invalid text_format")  # fmt: skip
    return None if value is None else value.lower()


def _row_lexicon(value: Any) -> str | None:
    """The row's lexicon lines, checked here so a bad one is the row's `validate` error."""
    value = _optional_text(value, "lexicon")
    if value is not None:
        problems = parse_lexicon(value, "lexicon column")[1]  # "lexicon column:2: no tab between ..."
        if problems:
            raise _Bad(problems[0], "have an invalid lexicon")
    return value


def _bad_offset(raw: bytes) -> int:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return -1


def _show(value: Any, limit: int = 60) -> str:
    """repr of a value, cut so a huge bad value does not make a huge error row."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _short(exc: Exception) -> str:
    return _show(str(exc), 120).strip("'\"")
