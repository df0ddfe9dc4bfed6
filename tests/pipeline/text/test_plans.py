"""Tests for pipeline.text.plans: a batch's chunk counts and capped audio estimate, the same over any process count."""

from __future__ import annotations

import pytest

from pipeline.text.chunks import default_segment, split_text
from pipeline.text.plans import PARALLEL_MIN_ROWS, plan_batch, plan_batches, workers_for

LONG = "This sentence is long enough that a few of them make several chunks of audio. " * 8


def test_a_batch_counts_each_rows_chunks_and_caps_their_seconds(tiny_weights):
    segment = default_segment()
    rows = [("Hello there.", "en", float("inf")), (LONG, "en", 1.0), ("♪ " + "la " * 400 + "♪", "en", 5.0)]
    plan = plan_batch(rows, segment, str(tiny_weights))
    long_chunks = split_text(LONG, segment)
    # The song cannot be cut and breaks every limit: the run reports it, the plan counts no chunk for it.
    assert plan.chunks == [1, len(long_chunks), 0]
    assert len(long_chunks) > 1
    assert plan.seconds == pytest.approx(split_text("Hello there.", segment)[0].est_seconds + len(long_chunks) * 1.0)


def test_batches_come_back_in_order_from_several_processes(tiny_weights):
    segment = default_segment()
    # Batches of different lengths, so one out of its place would show.
    batches = [[(f"Row {b}-{i}. " + "And more words. " * (b * 9), "en", 30.0) for i in range(b + 1)] for b in range(5)]
    one = list(plan_batches(batches, segment, str(tiny_weights), workers=1))
    assert list(plan_batches(iter(batches), segment, str(tiny_weights), workers=2)) == one
    assert [len(p.chunks) for p in one] == [1, 2, 3, 4, 5] and len({p.seconds for p in one}) == 5


def test_few_rows_are_planned_in_this_process():
    assert workers_for(PARALLEL_MIN_ROWS - 1) == 1
    assert workers_for(PARALLEL_MIN_ROWS) >= 1
