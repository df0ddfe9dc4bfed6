"""The finish stage (CPU): a row's chunk PCM -> trimmed, joined, loudness-matched, encoded (in a run: committed).

Each step's time per row lands in the row's timings (trim, join, loudness, encode), so the cost
of finishing per audio-second can be read back from metadata.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from pipeline.audio.assemble import join_audio, trim_silence
from pipeline.audio.encode import encode_audio
from pipeline.batch.stages.faults import is_fatal
from pipeline.batch.stages.rows import from_pcm16
from pipeline.config import SegmentConfig
from pipeline.manifest.columns import safe_name
from pipeline.output.commit import write_block
from pipeline.output.layout import audio_name
from pipeline.output.schema import FINISH_COLUMNS, missing_columns, owned_names, row_fields

log = logging.getLogger(__name__)
# Columns the stage reads; manifest columns (and anything else) pass through after row_fields.
NEEDED = ("id", "pcm", "sample_rate", "chunks", "error_stage", "error", "timings", "revision")


def assemble(pcm: list[bytes], sr: int, breaks: list[bool], segment: SegmentConfig, audio_format: str,
             timings: dict, pauses: list[float | None] | None = None,
             ) -> tuple[bytes, float, list[tuple[float, float]] | None]:  # fmt: skip
    """(encoded audio, duration in seconds, each chunk's (start_s, end_s) in it or None) of a row's
    chunks joined in order; pauses[i]: exact seconds after chunk i (SSML <break>), None for the usual
    pause. Adds step times to timings."""
    clock = _Clock(timings)
    pieces = [from_pcm16(p) for p in pcm]
    pauses = pauses or [None] * len(pieces)
    audio = join_audio(pieces, sr, breaks, segment, lap=clock.lap, pauses=pauses)  # the same path as `say`
    data = encode_audio(audio, sr, audio_format)
    clock.lap("encode")
    spans = chunk_spans(pieces, sr, breaks, segment, len(audio), pauses)
    clock.lap("join")  # laying out the spans is part of joining
    return data, len(audio) / sr, spans


def chunk_spans(pieces: list, sr: int, breaks: list[bool], segment: SegmentConfig, joined: int,
                pauses: list[float | None] | None = None) -> list[tuple[float, float]] | None:  # fmt: skip
    """Where each chunk's kept audio lies in the joined track, (start_s, end_s), laid out as
    assemble.join_chunks lays it out: trimmed lengths, a pause after each chunk (its exact
    pauses[i] where set, else the paragraph pause after a paragraph break, else the sentence
    pause), and with a zero pause an overlap of one crossfade.

    `joined`: the joined track's length in samples. The layout is recomputed here because the join
    returns only audio; when it does not end exactly at `joined` (the join's rules changed), the
    spans are unknown (None) rather than wrong, and the review page falls back to an estimate.
    """
    # trim_silence returns a view: measuring the kept lengths again costs one energy pass, no copy.
    lengths = [len(trim_silence(p, sr)) if segment.trim_silence else len(p) for p in pieces]
    usual = {False: segment.sentence_pause_s, True: segment.paragraph_pause_s}
    exact = pauses or [None] * len(pieces)
    gaps = [int(round((usual[bool(b)] if p is None else p) * sr)) for b, p in zip(breaks, exact, strict=True)]
    fade = int(round(segment.crossfade_ms / 1000 * sr))
    spans, end = [], 0
    for i, n in enumerate(lengths):
        gap = 0 if i == 0 else gaps[i - 1]
        overlap = 0 if i == 0 or gap > 0 else min(fade, end, n)  # no pause: the crossfade overlaps the chunks
        start = end + gap - overlap
        spans.append((start / sr, (start + n) / sr))
        end = start + n
    if end != joined:
        log.warning("chunk spans end at sample %d but the joined track has %d; not recording them", end, joined)
        return None
    return spans


def finish_rows(batch, *, segment: SegmentConfig, audio_format: str):
    """Ray Data map_batches function: engine-stage rows -> finished rows (row_fields, then carried columns)."""
    missing_columns(batch, NEEDED)
    records = [_finish_one(r, segment, audio_format) for r in batch.select(list(NEEDED)).to_pylist()]
    made = pa.Table.from_pylist(records, schema=pa.schema([(n, t) for n, t in row_fields() if n in FINISH_COLUMNS]))
    schema = pa.schema(row_fields())
    columns = [
        made.column(n) if n in FINISH_COLUMNS else batch.column(n).cast(schema.field(n).type) for n in schema.names
    ]
    table = pa.Table.from_arrays(columns, schema=schema)
    owned = owned_names()
    for name in batch.column_names:
        if name not in owned:
            table = table.append_column(batch.schema.field(name), batch.column(name))
    return table


def _finish_one(row: dict, segment: SegmentConfig, audio_format: str) -> dict:
    timings = dict(row["timings"] or ())
    chunks = row["chunks"]
    record = {"ok": False, "error_stage": row["error_stage"], "error": row["error"], "timings": timings,
              "chunks": chunks}  # fmt: skip
    if row["error"] is not None:
        return record
    try:
        breaks = [bool(c["paragraph_break_after"]) for c in chunks]
        pauses = [c.get("pause_after_s") for c in chunks]
        audio, duration, spans = assemble(
            row["pcm"], row["sample_rate"], breaks, segment, audio_format, timings, pauses
        )
    except Exception as exc:
        if is_fatal(exc):
            raise
        return record | {"error_stage": "assemble", "error": f"joining the chunks failed ({type(exc).__name__}: {exc})"}
    return record | {
        "ok": True,
        "audio": audio,
        "audio_name": audio_name(safe_name(row["id"]), audio_format, row["revision"] or 0),
        "duration_s": duration,
        "n_chunks": len(chunks),
        "chunks": [c | _span(spans, k) for k, c in enumerate(chunks)],
    }


def _span(spans: list[tuple[float, float]] | None, k: int) -> dict:
    start, end = (None, None) if spans is None else spans[k]
    return {"start_s": start, "end_s": end}


class FinishStage:
    """Ray Data callable class: finishes rows, and with `commit` (write_block's keyword arguments)
    also commits them in the same call, so encoded audio never makes an extra object-store trip.

    An actor rather than a task: it starts with the run, so the first finished row does not wait
    for a fresh worker to import the audio stack.
    """

    def __init__(self, segment: SegmentConfig, audio_format: str, commit: dict | None = None):
        self.segment, self.audio_format, self.commit = segment, audio_format, commit

    def __call__(self, batch):
        finished = finish_rows(batch, segment=self.segment, audio_format=self.audio_format)
        if self.commit is None:
            return finished
        return write_block(finished, audio_format=self.audio_format, **self.commit)


class _Clock:
    """Adds the seconds since the previous lap to timings[step]."""

    def __init__(self, timings: dict):
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step] = self.timings.get(step, 0.0) + now - self.last
        self.last = now
