"""What a run shows its user: the dry-run plan and the tables of the plan and of the final summary."""

from __future__ import annotations

import math

import pyarrow.dataset as pads

from pipeline.manifest.columns import clean
from pipeline.manifest.rows import chunk_seconds_cap
from pipeline.text.chunks import TextError, split_text, token_counter


def plan(prep) -> dict:
    """Rows, chunks, batches and actors a run would use, without loading a model.

    Chunks are split as the prepare stage splits them, with the same tokenizer (no engine needed);
    each chunk's audio estimate is capped at its row's max_duration (column, else generation.max_duration),
    as generation stops there.
    """
    cfg, info = prep.config, prep.manifest
    optional = [c for c in ("language", "max_duration") if c in info.optional]
    columns = [info.id_column, info.text_column, *optional]
    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet", schema=info.schema)
    table = dataset.to_table(columns=columns)  # with info.schema: integer ids come as text, as the run reads them
    skip, window, size = prep.skip, prep.window(), cfg.compute.batch_size
    size = 8 if size == "auto" else size  # the plan assumes the CPU default; a GPU fits more
    per_row, seconds = [], 0.0
    count_tokens = token_counter(cfg.model.weights)
    for row in table.to_pylist():
        text = row[info.text_column]
        if row[info.id_column] in skip or not isinstance(text, str) or not text.strip():
            continue
        language = clean(row.get("language")) or cfg.segment.language
        try:
            chunks = split_text(text, cfg.segment, language=language, count_tokens=count_tokens)
        except TextError:
            chunks = []  # the run will report this row as a segment error
        per_row.append(len(chunks))
        cap = chunk_seconds_cap(row.get("max_duration"), cfg.generation.max_duration)
        seconds += sum(min(c.est_seconds, cap) for c in chunks)
    windows = [per_row[i : i + window] for i in range(0, len(per_row), window)]
    return {
        "input_rows": info.num_rows,
        "manifest_errors": len(prep.manifest_errors),
        "already_done": len(prep.resume.skip),
        "redo": len(prep.resume.redo),
        "rows_to_run": prep.todo,
        "chunks": sum(per_row),
        "estimated_audio_s": round(seconds, 1),
        "windows": len(windows),
        "window_rows": window,
        "micro_batches": sum(math.ceil(sum(w) / size) for w in windows),
        "batch_size": size,
        "actors": cfg.compute.actors,  # N, or (min, max) for an autoscaling pool
        "continuity": cfg.generation.continuity,
        "config_hash": prep.config_hash,
    }


def table(summary: dict) -> str:
    """The final summary as an aligned two-column text table."""
    run = summary["this_run"]
    lines = [
        ("input rows", summary["input_rows"]),
        ("ok (all runs)", summary["ok"]),
        ("errors (all runs)", f"{summary['errors']} ({summary['manifest_errors']} from the manifest)"),
        ("accounted", "yes" if summary["accounted"] else f"NO: {summary.get('verdict') or summary['missing_ids']}"),
        ("this run: rows", f"{run['rows']} ({run['ok']} ok, {run['flagged']} flagged, {run['errors']} errors)"),
        ("this run: skipped", run["skipped_already_done"]),
        ("this run: audio", f"{run['audio_s']:.1f} s"),
        ("this run: wall", f"{run['wall_s']:.1f} s"),
        ("throughput", f"{run['rows_per_s']:.3f} rows/s, {run['audio_s_per_s']:.3f} audio-s/s"),
        ("engine / overhead", f"{run['engine_s']:.1f} s / {run['overhead_s']:.1f} s"),
        ("audio total", f"{summary['audio_hours']:.4f} h"),
        ("config hash", summary["config_hash"]),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def plan_table(p: dict) -> str:
    """The dry-run plan as an aligned two-column text table."""
    width = max(len(k) for k in p)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in p.items())
