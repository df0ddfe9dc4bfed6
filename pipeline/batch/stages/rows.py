"""Rows inside the engine stage: a planned row and its chunk jobs, gate judgement, the handover record."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.audio.quality import GateLimits, check_gates, measure_chunk

# int16 full scale: float audio in [-1, 1] maps onto [-32767, 32767] (never -32768, which has no mirror).
PCM_SCALE = 32767


@dataclass
class Row:
    """One planned row in flight in an engine actor; its chunk jobs stay together until handover."""

    id: Any
    voice_spec: str | None = None
    voice: Any = None
    seed: int = 0
    text_temp: float = 0.0  # prepare resolved these (row value, else the generation default)
    waveform_temp: float = 0.0
    max_duration: float | None = None
    jobs: list[Job] = field(default_factory=list)
    timings: dict = field(default_factory=lambda: defaultdict(float))
    engine_s: float = 0.0
    error: tuple[str, str] | None = None  # (stage, sentence for the user)

    @classmethod
    def from_prepared(cls, record: dict) -> Row:
        # An error row from prepare has no settings; it is only carried to the handover.
        row = cls(
            record["id"],
            record.get("voice"),
            seed=record.get("seed") or 0,
            text_temp=record.get("text_temp") or 0.0,
            waveform_temp=record.get("waveform_temp") or 0.0,
            max_duration=record.get("max_duration"),
        )
        row.timings.update(dict(record.get("timings") or ()))
        if record.get("error") is not None:
            row.error = (record.get("error_stage") or "prepare", record["error"])
        else:
            row.jobs = [Job(row, Chunk(**c), c["seed"]) for c in record.get("plan") or ()]
            if not row.jobs:
                row.error = ("prepare", "the row reached the engine with no chunk plan")
        return row

    def fail(self, stage: str, message: str) -> None:
        if self.error is None:  # the first failure is the one worth reporting
            self.error = (stage, message)


@dataclass(frozen=True)
class Chunk:
    """A planned chunk as prepare wrote it (the `plan` struct)."""

    index: int
    text: str
    seed: int
    est_seconds: float
    paragraph_break_after: bool
    voice: str | None = None  # None: the row's voice
    pause_after_s: float | None = None  # exact silence after it (SSML <break>); None: the usual pause


@dataclass
class Job:
    """One chunk to generate; `attempt` counts quality regenerations."""

    row: Row
    chunk: Chunk
    seed: int
    voice: Any = None
    attempt: int = 0
    result: Any = None
    passed: bool | None = None
    failed: list = field(default_factory=list)
    measures: dict = field(default_factory=dict)
    transcript: str | None = None  # what the speech check heard in the kept attempt (None: not checked)


@lru_cache(maxsize=8)
def _limits(pairs: tuple) -> GateLimits:
    return GateLimits(**dict(pairs))


def judge(job: Job, limits: dict) -> bool:
    """Measure one generated chunk and record which gates it fails; True when it passes."""
    result = job.result
    job.measures = measure_chunk(result.audio, result.sample_rate, max(job.chunk.est_seconds, 1e-3))
    job.failed = check_gates(job.measures, _limits(tuple(sorted(limits.items()))))
    job.passed = not job.failed
    return job.passed


def to_pcm16(audio) -> bytes:
    """Float audio [N] as little-endian int16 bytes (NaN -> 0, clipped at full scale)."""
    # One scaled copy, then in place: this runs in the engine actor, between generate calls.
    scaled = np.multiply(np.asarray(audio, dtype=np.float32), PCM_SCALE, dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=PCM_SCALE, neginf=-PCM_SCALE)
    np.clip(scaled, -PCM_SCALE, PCM_SCALE, out=scaled)
    return np.rint(scaled, out=scaled).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """int16 bytes back to float32 audio [N] in [-1, 1]."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / PCM_SCALE


def handover(row: Row, on_fail: str, model: str, checksum: str, node_id: str | None) -> dict:
    """The engine stage's record of one row: 16-bit PCM per chunk and how each chunk went, or the error."""
    if row.error is None:
        flagged = [j for j in row.jobs if j.passed is False]
        if flagged and on_fail == "error":
            j = flagged[0]
            row.fail(
                "quality",
                f"chunk {j.chunk.index} failed gates {j.failed} after {j.attempt + 1} attempts; "
                "relax quality.limits (quality.speech/speaker for wer, cer, speaker_similarity) "
                "or set quality.on_fail=flag",
            )
    record = {
        "model": model,
        "model_checksum": checksum,
        "node_id": node_id,
        "timings": dict(row.timings),
        "engine_s": row.engine_s,
    }
    if row.error is not None:
        return record | {"error_stage": row.error[0], "error": row.error[1]}
    return record | {
        "pcm": [to_pcm16(j.result.audio) for j in row.jobs],
        "sample_rate": int(row.jobs[0].result.sample_rate),
        "chunks": [_chunk_record(j) for j in row.jobs],
        "flagged": any(j.passed is False for j in row.jobs),
    }


def _chunk_record(job: Job) -> dict:
    r = job.result
    return {
        "index": job.chunk.index,
        "chars": len(job.chunk.text),
        "text": job.chunk.text,  # the plan's text, as the engine was given it (GenerationRequest.simple)
        "seed": job.seed,
        "attempts": job.attempt + 1,
        "passed": job.passed,
        "failed": list(job.failed),
        "duration_s": r.duration_s,
        "dropped_text_tokens": int(r.dropped_text_tokens),
        "paragraph_break_after": job.chunk.paragraph_break_after,
        "pause_after_s": job.chunk.pause_after_s,
        "measures": {k: float(v) for k, v in job.measures.items()},
        "transcript": job.transcript,
        "voice": job.chunk.voice if job.chunk.voice is not None else job.row.voice_spec,
    }
