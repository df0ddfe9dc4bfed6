"""Finishing rows in the synthesize stage: quality judgement, assembly into one file, the output table."""

from __future__ import annotations

import time
from functools import lru_cache

from pipeline.batch.manifest import ID, OPTIONAL_COLUMNS, TEXT, safe_name


@lru_cache(maxsize=8)
def _limits(pairs: tuple):
    from pipeline.audio.quality import GateLimits

    return GateLimits(**dict(pairs))


def judge(job, settings) -> bool:
    """Measure one generated chunk and record which gates it fails; True when it passes."""
    from pipeline.audio.quality import check_gates, measure_chunk

    result = job.result
    job.measures = measure_chunk(result.audio, result.sample_rate, max(job.chunk.est_seconds, 1e-3))
    job.failed = check_gates(job.measures, _limits(settings.quality_limits))
    job.passed = not job.failed
    return job.passed


def assemble(row, settings) -> tuple[bytes, float, int]:
    """(encoded audio, duration in seconds, sample rate) of a row's chunks joined in order."""
    from pipeline.audio.assemble import encode_audio, join_chunks, normalize_loudness, trim_silence

    start = time.perf_counter()
    sr = row.jobs[0].result.sample_rate
    pieces = [job.result.audio for job in row.jobs]
    if settings.trim_silence:
        pieces = [trim_silence(p, sr) for p in pieces]
    audio = join_chunks(
        pieces, sr, pause_s=settings.sentence_pause_s, paragraph_pause_s=settings.paragraph_pause_s,
        paragraph_breaks=[job.chunk.paragraph_break_after for job in row.jobs], crossfade_ms=settings.crossfade_ms,
    )
    if len(audio) == 0:
        raise ValueError("every chunk came out silent; try another seed or voice")
    if settings.loudness_lufs is not None:
        audio, _ = normalize_loudness(audio, sr, settings.loudness_lufs)
    data = encode_audio(audio, sr, settings.audio_format)
    row.timings["assemble"] += time.perf_counter() - start
    return data, len(audio) / sr, sr


def finish(row, settings, model: str, checksum: str) -> dict:
    """The output record of one row: audio and metadata, or the error that stopped it."""
    from pipeline.batch.synthesize import is_fatal

    record = {"id": row.id if isinstance(row.id, str) else None, "ok": False, "text": row.text or None}
    if row.error is None:
        flagged = [j for j in row.jobs if j.passed is False]
        if flagged and settings.on_fail == "error":
            j = flagged[0]
            row.fail("quality", f"chunk {j.chunk.index} failed gates {j.failed} after {j.attempt + 1} attempts; "
                                "relax quality.limits or set quality.on_fail=flag")
    if row.error is None:
        try:
            audio, duration, sr = assemble(row, settings)
        except Exception as exc:
            if is_fatal(exc):
                raise
            row.fail("assemble", f"joining the chunks failed ({type(exc).__name__}: {exc})")
    if row.error is not None:
        record.update(error_stage=row.error[0], error=row.error[1])
        return record
    record.update(
        ok=True, audio=audio, audio_name=f"{safe_name(row.id)}.{settings.audio_format}", duration_s=duration,
        sample_rate=sr, n_chunks=len(row.jobs), flagged=any(j.passed is False for j in row.jobs),
        seed=row.seed, voice=row.voice_spec, language=row.language, text_temp=row.text_temp,
        waveform_temp=row.waveform_temp, max_duration=row.max_duration, model=model,
        model_checksum=checksum, engine_s=row.engine_s, timings=dict(row.timings),
        chunks=[_chunk_record(j) for j in row.jobs],
    )
    return record


def _chunk_record(job) -> dict:
    r = job.result
    return {
        "index": job.chunk.index, "chars": len(job.chunk.text), "seed": job.seed, "attempts": job.attempt + 1,
        "passed": job.passed, "failed": list(job.failed), "duration_s": r.duration_s,
        "dropped_text_tokens": int(r.dropped_text_tokens),
        "measures": {k: float(v) for k, v in job.measures.items()},
    }


def output_table(batch, rows, stage):
    """Arrow table of the stage's records, followed by the manifest's carried columns (types untouched)."""
    import pyarrow as pa

    from pipeline.batch.schema import carried_name, row_fields

    info = stage.engine.model_info
    model, checksum = _model_label(info), str(info.get("checksum", ""))
    records = [finish(row, stage.settings, model, checksum) for row in rows]
    table = pa.Table.from_pylist(records, schema=pa.schema(row_fields()))
    for name in batch.column_names:
        if name not in (ID, TEXT, *OPTIONAL_COLUMNS):
            table = table.append_column(carried_name(name), batch.column(name))
    return table


def _model_label(info: dict) -> str:
    return str(info.get("name") or "/".join(str(info[k]) for k in ("layout", "size") if k in info) or "bark")
