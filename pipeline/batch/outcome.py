"""What a run shows its user: the dry-run plan and the tables of the plan and of the final summary."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.dataset as pads

from pipeline.manifest.columns import clean
from pipeline.manifest.rows import chunk_seconds_cap
from pipeline.text.plans import Row, plan_batches, workers_for

PLAN_BATCH_ROWS = 4096  # manifest rows read, and planned by one worker, at a time


def plan(prep, workers: int | None = None) -> dict:
    """Rows, chunks, batches and actors a run would use, without loading a model.

    Chunks are split as the prepare stage splits them, with the same tokenizer (no engine needed);
    each chunk's audio estimate is capped at its row's max_duration (column, else generation.max_duration),
    as generation stops there. The manifest is read PLAN_BATCH_ROWS at a time and planned over
    `workers` processes (None: one per core when the rows are many); the plan is the same for any count.
    """
    cfg = prep.config
    window, size = prep.window(), cfg.compute.batch_size
    size = 8 if size == "auto" else size  # the plan assumes the CPU default; a GPU fits more
    workers = workers_for(prep.todo) if workers is None else workers
    windows = _Windows(window, size)
    seconds = 0.0
    for batch in plan_batches(_rows(prep), cfg.segment, cfg.model.weights, workers):
        for chunks in batch.chunks:
            windows.add(chunks)
        seconds += batch.seconds
    windows.close()
    return {
        "input_rows": prep.manifest.num_rows,
        "manifest_errors": len(prep.manifest_errors),
        "already_done": len(prep.resume.skip),
        "redo": len(prep.resume.redo),
        "rows_to_run": prep.todo,
        "chunks": windows.chunks,
        "estimated_audio_s": round(seconds, 1),
        "windows": windows.count,
        "window_rows": window,
        "micro_batches": windows.micro_batches,
        "batch_size": size,
        "actors": cfg.compute.actors,  # N, or (min, max) for an autoscaling pool
        "continuity": cfg.generation.continuity,
        "config_hash": prep.config_hash,
    }


def _rows(prep) -> Iterator[list[Row]]:
    """The rows the run would plan, PLAN_BATCH_ROWS of the manifest at a time, as (text, language, cap)."""
    cfg, info, skip = prep.config, prep.manifest, set(prep.skip.to_pylist())
    optional = [c for c in ("language", "max_duration") if c in info.optional]
    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet", schema=info.schema)
    # With info.schema integer ids come as text, as the run reads them.
    for batch in dataset.to_batches(columns=[info.id_column, info.text_column, *optional], batch_size=PLAN_BATCH_ROWS):
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        extra = {name: batch.column(name).to_pylist() for name in optional}
        languages = extra.get("language") or [None] * len(ids)
        durations = extra.get("max_duration") or [None] * len(ids)
        rows = [
            (text, clean(language) or cfg.segment.language, chunk_seconds_cap(duration, cfg.generation.max_duration))
            for i, text, language, duration in zip(ids, texts, languages, durations, strict=True)
            if i not in skip and isinstance(text, str) and text.strip()
        ]
        if rows:
            yield rows


@dataclass
class _Windows:
    """Windows of `rows` planned rows and the micro-batches of `size` chunks they make, counted row by row."""

    rows: int
    size: int
    chunks: int = 0
    count: int = 0
    micro_batches: int = 0
    _open_rows: int = 0
    _open_chunks: int = 0

    def add(self, chunks: int) -> None:
        if self._open_rows == self.rows:
            self.close()
        self._open_rows += 1
        self._open_chunks += chunks
        self.chunks += chunks

    def close(self) -> None:
        """Count the open window, if it holds a row."""
        if self._open_rows:
            self.count += 1
            self.micro_batches += math.ceil(self._open_chunks / self.size)
            self._open_rows = self._open_chunks = 0


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
