"""Chunk counts and audio estimates of many texts, batch by batch, over a pool of processes (`run --dry-run`)."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache

from pipeline.text.chunks import TextError, split_text, token_counter

# Below this many rows one process plans them all: a worker takes ~1 s to start (it imports the
# tokenizer and num2words), about what 10,000 rows take to plan.
PARALLEL_MIN_ROWS = 20_000
# Batches queued per worker beyond the ones it works on: workers never wait for the reader, and
# at most this many batches (texts and results) are held at once.
BATCHES_AHEAD_PER_WORKER = 2

Row = tuple[str, str, float]  # (text, language, longest audio a chunk may get in seconds)


@dataclass(frozen=True)
class BatchPlan:
    """One batch's plan: the chunk count of each row in order (0: the run reports the row as a segment
    error) and the rows' audio estimate, each chunk's capped at its row's limit."""

    chunks: list[int]
    seconds: float


def workers_for(rows: int) -> int:
    """Processes worth starting for `rows` rows: one per core this process may use, one for few rows."""
    return len(os.sched_getaffinity(0)) if rows >= PARALLEL_MIN_ROWS else 1


def plan_batches(batches: Iterable[list[Row]], segment, weights: str, workers: int = 1) -> Iterator[BatchPlan]:
    """Each batch's BatchPlan, in the order of `batches`, whatever the number of workers.

    segment: the run's SegmentConfig; weights: model.weights, whose vocabulary counts the tokens
    (pipeline.text.chunks.token_counter). Batches are read as the workers need them, never all at once.
    """
    if workers <= 1:
        for batch in batches:
            yield plan_batch(batch, segment, weights)
        return
    # spawn, not fork: the reader's process runs Arrow's threads, which a forked child must not inherit.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(plan_batch, batch, segment, weights))
            if len(pending) > workers * BATCHES_AHEAD_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def plan_batch(rows: list[Row], segment, weights: str) -> BatchPlan:
    """The chunks of each row as the prepare stage splits them (same settings, same tokenizer)."""
    count_tokens = _token_counter(weights)
    counts, seconds = [], 0.0
    for text, language, cap in rows:
        try:
            chunks = split_text(text, segment, language=language, count_tokens=count_tokens)
        except TextError:
            chunks = []
        counts.append(len(chunks))
        seconds += sum(min(c.est_seconds, cap) for c in chunks)
    return BatchPlan(counts, seconds)


@cache
def _token_counter(weights: str):
    """One tokenizer per process, loaded by its first batch (a worker gets its batches one by one)."""
    return token_counter(weights)
