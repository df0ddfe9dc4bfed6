"""Row value conversion: any poison value becomes that row's error sentence, never an exception."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipeline.manifest.columns import display_id
from pipeline.manifest.rows import RowValues, Undecodable, parse_row, speakable, table_rows

GOOD = {"id": "r1", "text": "Hello there."}


def test_a_plain_row_parses_to_values():
    values, error = parse_row(
        {
            **GOOD,
            "seed": 7.0,
            "text_temp": np.float32(0.5),
            "voice": " v2/en_speaker_1 ",
            "language": "pt-BR",
            "max_duration": 3,
            "waveform_temp": float("nan"),
        }
    )
    assert error is None
    assert values == RowValues(
        id="r1",
        text="Hello there.",
        voice="v2/en_speaker_1",
        seed=7,
        language="pt-BR",
        text_temp=0.5,
        waveform_temp=None,
        max_duration=3.0,
    )
    assert isinstance(values.seed, int) and isinstance(values.max_duration, float)
    assert parse_row({**GOOD, "seed": np.int64(2**62)})[0].seed == 2**62


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("seed", math.inf, "seed inf is invalid"),
        ("seed", -math.inf, "seed -inf is invalid"),
        ("seed", 1e300, "seed 1e+300 is invalid"),
        ("seed", float(2**63), "2**63-1"),
        ("seed", 2**64, "2**63-1"),
        ("seed", -1, "seed -1 is invalid"),
        ("seed", 7.5, "seed 7.5 is invalid"),
        ("seed", "42", "not a number"),
        ("seed", True, "not a number"),
        ("seed", [1, 2], "not a number"),
        ("text_temp", math.inf, "text_temp inf is invalid"),
        ("text_temp", -0.5, "text_temp -0.5 is invalid"),
        ("waveform_temp", "hot", "not a number"),
        ("max_duration", 0, "max_duration 0 is invalid"),
        ("max_duration", math.inf, "max_duration inf"),
        ("voice", 12, "voice must be a string"),
        ("voice", Undecodable(b"\xff\xfe"), "not valid UTF-8"),
        ("language", "english please", "not a language code"),
        ("text", None, "text is missing"),
        ("text", " \n\t", "text is empty"),
        ("text", 3.5, "text must be a string"),
        ("text", Undecodable(b"ok \xc3\x28 no"), "first bad byte at offset 3"),
        ("text", "\u200b\u200d\ufeff\u2060", "nothing speakable"),
        ("text", "\x00\x01\x07 \x1b", "nothing speakable"),
        ("text", "\u0301\u0302", "nothing speakable"),
        ("id", None, "id is missing"),
        ("id", Undecodable(b"\xff"), "id '\\\\xff' is not valid UTF-8"),
        ("id", "a\nb", "control characters"),
    ],
)
def test_every_poison_value_is_a_row_error(field, value, words):
    values, error = parse_row({**GOOD, field: value})
    assert values is None
    assert words in error, error


def test_a_value_nobody_foresaw_is_still_only_a_row_error():
    class Weird(float):
        def __float__(self):
            raise RuntimeError("boom")

    values, error = parse_row({**GOOD, "seed": Weird(1.5)})
    assert values is None and "RuntimeError" in error and "boom" in error


def test_text_length_limit_is_configurable_and_named():
    assert parse_row({**GOOD, "text": "a" * 100})[1] is None
    error = parse_row({**GOOD, "text": "a" * 101}, max_text_chars=100)[1]
    assert "101 characters" in error and "segment.max_text_chars=100" in error
    huge = parse_row({**GOOD, "seed": 10**400})[1]
    assert len(huge) < 200  # a huge bad value does not make a huge error row


def test_speakable_accepts_any_script_and_symbols():
    assert all(speakable(t) for t in ("ok", "日本", "5", "♪", "...", "\u200b!"))
    assert not any(speakable(t) for t in ("", " ", "\u200b", "\u00ad\u200e"))


def test_table_rows_moves_invalid_utf8_to_the_row_that_holds_it():
    # A string column whose bytes are not UTF-8 (as a foreign writer can produce): built as binary, viewed as string.
    raw = pa.array([b"fine", b"bad \xff", None], pa.binary())
    text = raw.view(pa.string())
    with pytest.raises(UnicodeDecodeError):
        pa.table({"text": text}).to_pylist()  # what failed the whole batch before
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "text": text,
            "blob": raw,
            "seed": pa.array([1, None, 3], pa.int32()),
            "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    rows = table_rows(table)
    assert rows[0] == {"id": "a", "text": "fine", "blob": "fine", "seed": 1, "cat": "x"}
    assert isinstance(rows[1]["text"], Undecodable) and rows[2]["text"] is None
    assert [parse_row(r)[1] is None for r in rows] == [True, False, False]
    assert "not valid UTF-8" in parse_row(rows[1])[1]
    large = pa.table({"t": pa.array([b"\xffx"], pa.large_binary()).view(pa.large_string())})
    assert isinstance(table_rows(large)[0]["t"], Undecodable)
    assert table_rows(pa.table({"a": pa.array([], pa.int8())})) == []


def test_display_id_shows_undecodable_bytes_escaped():
    assert display_id(Undecodable(b"a\xffb")) == "a\\xffb" and display_id("x") == "x" and display_id(None) is None


@pytest.mark.parametrize(
    "change,kind",
    [
        ({"text": "  "}, "have empty text"),
        ({"text": None}, "have no text (null)"),
        ({"seed": -1}, "have an invalid seed"),
        ({"seed": "7"}, "have an invalid seed"),
        ({"seed": 2**64}, "have an invalid seed"),
        ({"seed": 1.5}, "have an invalid seed"),
        ({"language": "english!"}, "have an invalid language"),
        ({"id": None}, "have no id (null)"),
    ],
)
def test_each_row_problem_has_a_kind_that_groups_rows(change, kind):
    from pipeline.manifest.rows import parse_row_issue

    values, issue = parse_row_issue({**GOOD, **change})
    assert values is None and issue[0] == kind and issue[1] == parse_row({**GOOD, **change})[1]
    assert parse_row_issue(GOOD)[1] is None


def test_the_chunk_cap_is_the_rows_max_duration_else_the_configs():
    from pipeline.manifest.rows import chunk_seconds_cap

    assert chunk_seconds_cap(2.5, 10.0) == 2.5 and chunk_seconds_cap(None, 10.0) == 10.0
    assert chunk_seconds_cap(float("nan"), None) == float("inf") and chunk_seconds_cap(-1, 4) == 4.0
    assert chunk_seconds_cap("x", None) == float("inf")
