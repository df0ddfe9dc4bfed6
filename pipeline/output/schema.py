"""Arrow schemas of the columns each stage adds, and of what the pipeline writes.

prepare adds `prepared_fields` (the row's settings and its chunk plan); the engine stage swaps
`plan` for `engine_fields` (16-bit PCM per chunk and how each chunk went); finish swaps `pcm`
for the encoded audio, giving `row_fields`. Manifest columns ride along after them.
"""

from __future__ import annotations

import pyarrow as pa

# The encoded audio's column between finish and commit: its bytes go to a file, never into metadata.
AUDIO = "audio"
# row_fields columns the finish stage computes; the rest come from the earlier stages as they are.
FINISH_COLUMNS = ("ok", "error_stage", "error", AUDIO, "audio_name", "duration_s", "n_chunks", "timings", "chunks")


def plan_type():
    """A row's chunks, in order, as prepare planned them; they travel together in one row."""
    return pa.list_(
        pa.struct(
            [
                ("index", pa.int32()),
                ("text", pa.string()),
                ("seed", pa.int64()),  # first attempt's seed (chunk_seed of the row seed)
                ("est_seconds", pa.float64()),  # the segmenter's spoken-length estimate
                ("paragraph_break_after", pa.bool_()),
                ("voice", pa.string()),  # the voice spec speaking it ([voice: X], NAME:), else the row's
                ("pause_after_s", pa.float64()),  # an SSML <break>'s exact silence after it; null: the usual pause
            ]
        )
    )


def chunk_type():
    """One struct per chunk: what was generated and how the quality gates judged it."""
    return pa.struct(
        [
            ("index", pa.int32()),
            ("chars", pa.int32()),  # len(text); kept for readers of outputs written before `text`
            ("text", pa.string()),  # exactly what Bark was given (the plan's normalised text); null in older outputs
            ("seed", pa.int64()),  # seed of the attempt that was kept
            ("attempts", pa.int32()),  # 1 + regenerations
            ("passed", pa.bool_()),  # null when the gates are off
            ("failed", pa.list_(pa.string())),  # names of the gates the kept attempt failed
            ("duration_s", pa.float64()),
            ("dropped_text_tokens", pa.int32()),
            ("paragraph_break_after", pa.bool_()),  # finish joins with the longer pause after it
            ("pause_after_s", pa.float64()),  # the plan's exact pause after it (SSML <break>); null: the usual one
            ("measures", pa.map_(pa.string(), pa.float64())),  # gate figures; wer, cer, speaker_similarity too
            ("voice", pa.string()),  # the voice spec that spoke it
            ("transcript", pa.string()),  # what the speech check heard; null when quality.speech is off
            # Where the chunk's kept (trimmed) audio lies in the row's audio, in seconds, as finish joined
            # it (pauses and crossfades included); null until finish, in older outputs, or when unknown.
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
        ]
    )


def _timings():
    return pa.map_(pa.string(), pa.float64())  # step -> seconds spent on this row


def prepared_fields():
    """Columns the prepare stage emits (error rows carry only id, text and the error)."""
    return [
        ("id", pa.string()),
        ("text", pa.string()),
        ("error_stage", pa.string()),
        ("error", pa.string()),
        ("voice", pa.string()),  # the voice spec in force (row's, else generation.voice)
        ("seed", pa.int64()),
        ("language", pa.string()),
        ("text_temp", pa.float64()),
        ("waveform_temp", pa.float64()),
        ("max_duration", pa.float64()),
        ("plan", plan_type()),
        ("timings", _timings()),
        *resume_fields(),
    ]


def resume_fields():
    """What resume needs in every metadata and errors row (see batch/plan.py and output/read.py)."""
    return [
        ("row_hash", pa.string()),  # sha256 of the row's text and settings: a changed row is redone
        ("revision", pa.int32()),  # 0 for a row's first write, +1 for each redo
    ]


def engine_fields():
    """Columns the engine stage adds in place of `plan`."""
    return [
        ("pcm", pa.list_(pa.binary())),  # per chunk: little-endian int16 samples, mono
        ("sample_rate", pa.int32()),
        ("chunks", pa.list_(chunk_type())),
        ("flagged", pa.bool_()),  # a chunk never passed the quality gates
        ("engine_s", pa.float64()),  # this row's share of the time spent inside engine.generate
        ("model", pa.string()),
        ("model_checksum", pa.string()),
        ("node_id", pa.string()),  # the Ray node whose engine made the row
    ]


def row_fields():
    """Columns of a finished row (the processor's output; carried manifest columns come after)."""
    return [
        ("id", pa.string()),
        ("ok", pa.bool_()),
        ("error_stage", pa.string()),
        ("error", pa.string()),
        (AUDIO, pa.binary()),
        ("audio_name", pa.string()),  # path under audio/ (layout.audio_name), from the id by manifest.safe_name
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("n_chunks", pa.int32()),
        ("flagged", pa.bool_()),
        ("seed", pa.int64()),
        ("voice", pa.string()),
        ("language", pa.string()),
        ("text_temp", pa.float64()),
        ("waveform_temp", pa.float64()),
        ("max_duration", pa.float64()),
        ("model", pa.string()),
        ("model_checksum", pa.string()),
        ("node_id", pa.string()),
        ("engine_s", pa.float64()),
        ("timings", _timings()),
        ("chunks", pa.list_(chunk_type())),
        ("text", pa.string()),
        *resume_fields(),
    ]


# Columns that never reach metadata/*.parquet.
TRANSIENT_COLUMNS = ("ok", "error_stage", "error", AUDIO)
# Columns the write step adds to metadata.
WRITER_COLUMNS = ("audio_path", "config_hash")


def owned_names() -> set[str]:
    """Every column name a stage writes; a manifest column of the same name must be renamed."""
    names = [f for f, _ in (*prepared_fields(), *engine_fields(), *row_fields())]
    return set(names) | set(WRITER_COLUMNS)


def carried_name(name: str) -> str:
    """Manifest columns keep their name unless the pipeline owns it; then they get an `input_` prefix."""
    return f"input_{name}" if name in owned_names() else name


def error_schema():
    return pa.schema([("id", pa.string()), ("stage", pa.string()), ("error", pa.string()), *resume_fields()])


def summary_schema():
    """What the write step hands back to the driver per row: enough for progress and the summary."""
    return pa.schema(
        [
            ("id", pa.string()),
            ("ok", pa.bool_()),
            ("flagged", pa.bool_()),
            ("duration_s", pa.float64()),
            ("engine_s", pa.float64()),
            ("stage", pa.string()),
            ("error", pa.string()),
        ]
    )


def missing_columns(table, needed) -> None:
    """Stages name the columns they need and fail naming the missing ones (a wiring mistake)."""
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise ValueError(
            f"batch lacks column(s) {missing}; it has {table.column_names}; "
            "stages run in the order prepare -> engine -> finish"
        )
