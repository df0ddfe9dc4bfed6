"""The review page's one pass over an output: each id's newest record, the dataset summary, the flagged rows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.output.layout import ERRORS, METADATA
from pipeline.output.read import (
    Newest,
    committed_files,
    load_index,
    manifest_error_rows,
    newest_records,
    picked_batches,
)
from pipeline.review.dataset import DatasetStats
from pipeline.storage import Store

# What the summary reads of every finished row beyond the newest-record rule's own columns.
CHUNK_COLUMNS = ("id", "flagged", "config_hash", "chunks")
BATCH_ROWS = 10_000  # rows per Arrow batch: the pass never turns them into Python rows


@dataclass
class Survey:
    """An output in one pass: the summary, where each id's newest record is, and which rows are flagged."""

    stats: DatasetStats
    newest: Newest  # id -> Record (revision, ok, file, row); newest.files the files they index
    failed: dict = field(default_factory=dict)  # id -> failed chunks, for every flagged finished row
    manifest_errors: list = field(default_factory=list)  # rows the current manifest rejected


def survey(store: Store) -> Survey:
    """Read the output once: the newest-record rule's columns of every record, then only the chunks of the
    newest finished records, in Arrow batches (no row is built in Python but the flagged ones)."""
    index = load_index(store)
    newest = newest_records(store, committed_files(store, METADATA, index), committed_files(store, ERRORS, index))
    out = Survey(DatasetStats(superseded=newest.superseded), newest, manifest_errors=manifest_error_rows(store))
    kept: dict[int, list[int]] = defaultdict(list)  # file -> rows holding a newest finished record
    for record in newest.records.values():
        if record.ok:
            out.stats.add_finished(record.value, record.revision)
            kept[record.file].append(record.row)
        else:
            out.stats.add_error(record.value)
    for *_, stage in newest.unkeyed:
        out.stats.add_error(stage)
    for row in out.manifest_errors:
        out.stats.add_error(row.get("stage"))
    for number, rows in sorted(kept.items()):
        for batch in picked_batches(store, newest.files[number], np.sort(rows), CHUNK_COLUMNS, BATCH_ROWS):
            flagged, failed = out.stats.add_chunks(batch)
            ids = batch.column("id").filter(pa.array(flagged)).to_pylist()
            out.failed.update(zip(ids, failed[flagged].tolist(), strict=True))
    return out
