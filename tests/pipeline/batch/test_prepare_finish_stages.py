"""The prepare and finish stages alone, on hand-made batches (no engine, no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from support.stages import LONG, SR, batch, config, decode

from pipeline.batch.stages.finish import finish_rows
from pipeline.batch.stages.prepare import PrepareStage
from pipeline.batch.stages.rows import from_pcm16, to_pcm16
from pipeline.output.layout import audio_name, journal
from pipeline.output.schema import engine_fields, prepared_fields
from pipeline.text.chunks import chunk_seed, token_counter


def prepare(table, cfg=None, weights="w"):
    cfg = cfg or config()
    return PrepareStage(weights, cfg.generation, cfg.segment)(table)


def test_prepare_plans_every_chunk_of_a_row_in_one_row():
    out = prepare(batch([("a", LONG), ("b", "Hi.")]), config(generation={"seed": 3}))
    assert out.num_rows == 2  # no row is exploded into chunks: they travel together
    assert out.schema.names[: len(prepared_fields())] == [n for n, _ in prepared_fields()]
    plan = out["plan"][0].as_py()
    assert len(plan) >= 3 and [c["index"] for c in plan] == list(range(len(plan)))
    assert " ".join(c["text"] for c in plan) == LONG
    assert [c["seed"] for c in plan] == [chunk_seed(3, c["index"]) for c in plan]
    assert all(0 < c["est_seconds"] <= 3.0 for c in plan)
    assert out["error"].to_pylist() == [None, None]


def test_prepare_marks_paragraph_breaks_and_resolves_row_overrides():
    table = batch(
        [("p", "First paragraph.\n\nSecond one.")],
        voice=["v2/en_speaker_1"],
        text_temp=pa.array([0.2]),
        language=["en"],
    )
    row = prepare(table, config(generation={"voice": "v2/en_speaker_0", "waveform_temp": 0.4})).to_pylist()[0]
    assert [c["paragraph_break_after"] for c in row["plan"]] == [True, False]
    settings = (row["voice"], row["text_temp"], row["waveform_temp"], row["language"])
    assert settings == ("v2/en_speaker_1", 0.2, 0.4, "en")


def test_prepare_turns_bad_rows_into_error_rows_and_keeps_carried_columns():
    table = batch(
        [("ok", "Fine."), ("blank", "  "), ("huge", "word " * 50)],
        chapter=pa.array([1, 2, 3], pa.int8()),
        plan=["x", "y", "z"],
    )
    out = prepare(table, config(segment={"max_text_chars": 100})).to_pylist()
    assert [r["error_stage"] for r in out] == [None, "validate", "validate"]
    assert "text is empty" in out[1]["error"] and "max_text_chars=100" in out[2]["error"]
    assert out[1]["plan"] is None
    assert [r["chapter"] for r in out] == [1, 2, 3] and [r["input_plan"] for r in out] == ["x", "y", "z"]


def test_the_tokenizer_comes_from_the_weights_or_the_bundled_vocab(tiny_weights):
    text = "Tokenizers count WordPiece pieces, not words."
    from bark_model.tokenizer import BarkTokenizer

    exact = BarkTokenizer.from_file(tiny_weights / "vocab.txt").count(text)
    assert token_counter(str(tiny_weights))(text) == token_counter("s3://bucket/weights")(text) == exact > 6


def test_pcm16_round_trip_is_within_one_step_and_clips():
    audio = np.array([0.0, 0.5, -0.5, 1.5, -2.0, np.nan], np.float32)
    back = from_pcm16(to_pcm16(audio))
    assert back.dtype == np.float32 and len(to_pcm16(audio)) == 2 * len(audio)
    assert back == pytest.approx([0.0, 0.5, -0.5, 1.0, -1.0, 0.0], abs=1 / 32767)


def engine_rows(rows, carried=None, pauses=None):
    """A batch as the engine stage hands it over: (id, [chunk audio], [paragraph breaks]) or (id, error);
    pauses: each chunk's exact pause_after_s (every row's)."""
    records = []
    for row in rows:
        base = {
            "id": row[0],
            "text": "t",
            "voice": None,
            "seed": 1,
            "language": "en",
            "text_temp": 0.7,
            "waveform_temp": 0.7,
            "max_duration": None,
            "model": "suno/fake",
            "model_checksum": "sha256:x",
            "node_id": "node-1",
            "engine_s": 1.0,
            "timings": {"generate": 1.0},
            "flagged": False,
        }
        if isinstance(row[1], str):
            records.append(base | {"error_stage": "voice", "error": row[1]})
            continue
        chunks = [
            {
                "index": i,
                "duration_s": len(a) / SR,
                "paragraph_break_after": b,
                "failed": [],
                "measures": {},
                "pause_after_s": (pauses or [None] * len(row[1]))[i],
            }
            for i, (a, b) in enumerate(zip(row[1], row[2], strict=True))
        ]
        records.append(base | {"pcm": [to_pcm16(a) for a in row[1]], "sample_rate": SR, "chunks": chunks})
    fields = [f for f in prepared_fields() if f[0] not in ("plan",)] + engine_fields()
    table = pa.Table.from_pylist(records, schema=pa.schema(dict(fields).items()))
    return table.append_column("chapter", pa.array(carried or [7] * len(rows), pa.int16()))


def test_finish_joins_chunks_with_pauses_encodes_and_passes_errors_on():
    tone = (0.3 * np.sin(np.arange(SR) * 2 * np.pi * 220 / SR)).astype(np.float32)
    table = engine_rows([("a", [tone, tone[: SR // 2], tone], [True, False, False]), ("b", "voice 'x' is unknown")])
    cfg = config()
    out = finish_rows(table, segment=cfg.segment, audio_format="wav")
    rows = out.to_pylist()
    assert [r["ok"] for r in rows] == [True, False] and rows[1]["error"] == "voice 'x' is unknown"
    expected = SR + SR // 2 + SR + int(0.3 * SR) + int(0.1 * SR)  # paragraph pause, then a sentence pause
    assert decode(rows[0]["audio"]).shape[0] == expected
    assert rows[0]["duration_s"] == pytest.approx(expected / SR) and rows[0]["n_chunks"] == 3
    assert rows[0]["audio_name"] == audio_name("a", "wav") and rows[0]["node_id"] == "node-1"
    assert {"generate", "trim", "join", "encode"} <= {k for k, _ in rows[0]["timings"]}
    assert out.column_names[-1] == "chapter" and "pcm" not in out.column_names


def test_finish_makes_an_all_silent_row_an_assemble_error():
    silent = np.zeros(SR, np.float32)
    cfg = config(segment={"trim_silence": True})
    row = finish_rows(engine_rows([("s", [silent], [False])]), segment=cfg.segment, audio_format="flac").to_pylist()[0]
    assert not row["ok"] and row["error_stage"] == "assemble" and "silent" in row["error"]


def test_finish_applies_the_loudness_target():
    import pyloudnorm

    quiet = (0.01 * np.sin(np.arange(2 * SR) * 2 * np.pi * 220 / SR)).astype(np.float32)
    cfg = config(segment={"loudness_lufs": -20.0})
    row = finish_rows(engine_rows([("q", [quiet], [False])]), segment=cfg.segment, audio_format="wav").to_pylist()[0]
    loudness = pyloudnorm.Meter(SR).integrated_loudness(decode(row["audio"]).astype(np.float64))
    assert loudness == pytest.approx(-20, abs=0.5)
    assert "loudness" in dict(row["timings"])


def test_the_finish_stage_commits_in_the_same_call_when_asked(tmp_path):
    from pipeline.batch.stages.finish import FinishStage
    from pipeline.storage import Store

    tone = (0.3 * np.sin(np.arange(SR) * 2 * np.pi * 220 / SR)).astype(np.float32)
    table = engine_rows([("a", [tone], [False]), ("b", "voice 'x' is unknown")])
    cfg = config()
    assert FinishStage(cfg.segment, "wav")(table)["ok"].to_pylist() == [True, False]  # no commit: rows back
    store = Store.open(str(tmp_path))
    for name in ("audio", "metadata", "errors"):
        store.makedirs(name)
    commit = {"output_url": str(tmp_path), "storage_options": {}, "config_hash": "sha256:c"}
    summary = FinishStage(cfg.segment, "wav", commit)(table).to_pylist()
    assert [(r["id"], r["ok"], r["stage"]) for r in summary] == [("a", True, None), ("b", False, "voice")]
    assert decode((tmp_path / "audio" / audio_name("a", "wav")).read_bytes()).shape[0] == SR
    import pyarrow.parquet as pq

    meta = pq.read_table(next((tmp_path / journal("metadata")).glob("part-*.parquet"))).to_pylist()
    assert [m["node_id"] for m in meta] == ["node-1"] and meta[0]["chapter"] == 7


def padded_tone(seconds: float, lead_s: float, tail_s: float) -> np.ndarray:
    """A tone with quiet padding (below trim's -45 dBFS, yet not zero) before and after, as Bark pads its chunks."""
    pad = lambda s: np.full(int(s * SR), 0.002, np.float32)  # noqa: E731
    tone = 0.3 * np.sin(np.arange(int(seconds * SR)) * 2 * np.pi * 220 / SR) + 0.01
    return np.concatenate([pad(lead_s), tone.astype(np.float32), pad(tail_s)])


def test_finish_records_where_each_trimmed_chunk_lies_in_the_joined_audio():
    from pipeline.audio.assemble import trim_silence

    pieces = [padded_tone(1.0, 0.3, 0.4), padded_tone(0.5, 0.2, 0.1), padded_tone(0.8, 0.0, 0.5)]
    cfg = config(segment={"trim_silence": True, "crossfade_ms": 10.0})
    table = engine_rows([("a", pieces, [True, False, False])])
    row = finish_rows(table, segment=cfg.segment, audio_format="wav").to_pylist()[0]
    audio = decode(row["audio"])
    spans = [(round(c["start_s"] * SR), round(c["end_s"] * SR)) for c in row["chunks"]]
    assert [b - a for a, b in spans] == [len(trim_silence(p, SR)) for p in pieces]  # the kept audio, not the raw
    assert spans[-1][1] == len(audio) and row["chunks"][-1]["end_s"] == pytest.approx(row["duration_s"])
    assert [spans[1][0] - spans[0][1], spans[2][0] - spans[1][1]] == [int(0.3 * SR), int(0.1 * SR)]
    nonzero = np.flatnonzero(audio)
    inside = np.zeros(len(audio), bool)
    for a, b in spans:
        inside[a:b] = True
        heard = np.flatnonzero(audio[a:b])
        assert heard[0] <= 8 and heard[-1] >= b - a - 9  # sound from the span's first samples to its last (fades)
    assert inside[nonzero].all()  # the pauses between spans are silent


def test_finish_spans_overlap_by_the_crossfade_without_pauses_and_are_none_when_the_layout_disagrees():
    from pipeline.batch.stages.finish import chunk_spans

    tone = (0.3 * np.sin(np.arange(SR) * 2 * np.pi * 220 / SR)).astype(np.float32)
    cfg = config(segment={"sentence_pause_s": 0.0, "crossfade_ms": 10.0})
    row = finish_rows(
        engine_rows([("a", [tone, tone], [False, False])]), segment=cfg.segment, audio_format="wav"
    ).to_pylist()[0]
    (s0, e0), (s1, e1) = [(c["start_s"], c["end_s"]) for c in row["chunks"]]
    assert (s0, e0) == (0.0, 1.0) and s1 == pytest.approx(1.0 - 0.01) and e1 == pytest.approx(row["duration_s"])
    assert chunk_spans([tone, tone], SR, [False, False], cfg.segment, 2 * SR - 240) is not None
    assert chunk_spans([tone, tone], SR, [False, False], cfg.segment, 2 * SR) is None  # a join that laid out otherwise


def test_finish_joins_with_a_chunks_exact_pause_and_records_spans_that_follow_it():
    tone = (0.3 * np.sin(np.arange(SR) * 2 * np.pi * 220 / SR)).astype(np.float32)
    cfg = config()
    table = engine_rows([("a", [tone, tone, tone], [False, True, False])], pauses=[0.75, None, None])
    row = finish_rows(table, segment=cfg.segment, audio_format="wav").to_pylist()[0]
    assert decode(row["audio"]).shape[0] == 3 * SR + int(0.75 * SR) + int(0.3 * SR)  # <break>, then a paragraph
    starts = [c["start_s"] for c in row["chunks"]]
    assert starts == pytest.approx([0.0, 1.75, 3.05]) and row["chunks"][-1]["end_s"] == pytest.approx(row["duration_s"])
    assert [c["pause_after_s"] for c in row["chunks"]] == [0.75, None, None]
