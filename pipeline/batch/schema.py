"""Arrow schemas of what the pipeline writes: synthesized rows, metadata and error records."""

from __future__ import annotations


def chunk_type():
    """One struct per chunk: what was generated and how the quality gates judged it."""
    import pyarrow as pa

    return pa.struct([
        ("index", pa.int32()),
        ("chars", pa.int32()),
        ("seed", pa.int64()),  # seed of the attempt that was kept
        ("attempts", pa.int32()),  # 1 + regenerations
        ("passed", pa.bool_()),  # null when the gates are off
        ("failed", pa.list_(pa.string())),  # names of the gates the kept attempt failed
        ("duration_s", pa.float64()),
        ("dropped_text_tokens", pa.int32()),
        ("measures", pa.map_(pa.string(), pa.float64())),
    ])


def row_fields():
    """Columns the synthesize stage adds to each row (carried manifest columns come after)."""
    import pyarrow as pa

    return [
        ("id", pa.string()),
        ("ok", pa.bool_()),
        ("error_stage", pa.string()),
        ("error", pa.string()),
        ("audio", pa.binary()),
        ("audio_name", pa.string()),  # file name under audio/; derived from id by manifest.safe_name
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("n_chunks", pa.int32()),
        ("flagged", pa.bool_()),  # a chunk never passed the quality gates
        ("seed", pa.int64()),
        ("voice", pa.string()),
        ("language", pa.string()),
        ("text_temp", pa.float64()),
        ("waveform_temp", pa.float64()),
        ("max_duration", pa.float64()),
        ("model", pa.string()),
        ("model_checksum", pa.string()),
        ("engine_s", pa.float64()),  # this row's share of the time spent inside engine.generate
        ("timings", pa.map_(pa.string(), pa.float64())),  # stage -> seconds for this row
        ("chunks", pa.list_(chunk_type())),
        ("text", pa.string()),
    ]


# Actor-only columns that never reach metadata/*.parquet.
TRANSIENT_COLUMNS = ("ok", "error_stage", "error", "audio")
# Columns the write stage adds to metadata.
WRITER_COLUMNS = ("audio_path", "config_hash")


def carried_name(name: str) -> str:
    """Manifest columns keep their name unless the pipeline owns it; then they get an `input_` prefix."""
    reserved = {field for field, _ in row_fields()} | set(WRITER_COLUMNS)
    return f"input_{name}" if name in reserved else name


def error_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("stage", pa.string()), ("error", pa.string())])


def summary_schema():
    """What the write stage hands back to the driver per row: enough for progress and the summary."""
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()),
        ("ok", pa.bool_()),
        ("flagged", pa.bool_()),
        ("duration_s", pa.float64()),
        ("engine_s", pa.float64()),
        ("stage", pa.string()),
        ("error", pa.string()),
    ])
