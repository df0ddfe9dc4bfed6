"""The review page's one pass over an output: each id's newest record, the dataset summary, the flagged rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.output.layout import ERRORS, METADATA
from pipeline.output.read import (
    DURATION,
    FILE,
    ID,
    OK,
    REVISION,
    ROW,
    STAGE,
    Newest,
    committed_files,
    load_index,
    manifest_error_rows,
    newest_records,
    picked_batches,
    rows_by_file,
)
from pipeline.review.dataset import DatasetStats
from pipeline.storage import Store

# What the summary reads of every finished row beyond the newest-record rule's own columns.
CHUNK_COLUMNS = ("id", "flagged", "config_hash", "chunks")
BATCH_ROWS = 10_000  # rows per Arrow batch: the pass never turns them into Python rows
FAILED = "failed"  # a flagged row's failed chunks (0: flagged by its own column)
# Survey.flagged: where each flagged finished row is (FILE indexes Newest.files, ROW counts rows in it).
FLAGGED_SCHEMA = pa.schema([(ID, pa.string()), (FILE, pa.int32()), (ROW, pa.int64()), (FAILED, pa.int64())])


@dataclass
class Survey:
    """An output in one pass: the summary, where each id's newest record is, and which rows are flagged.

    All of it stays in Arrow (a row per id in newest.table, a row per flagged row in flagged): a page
    turns only its own rows into Python objects (review/listing.py).
    """

    stats: DatasetStats
    newest: Newest  # one row per id, sorted by id; newest.files the files its FILE column indexes
    flagged: pa.Table = field(default_factory=FLAGGED_SCHEMA.empty_table)  # FLAGGED_SCHEMA, in file order
    manifest_errors: list = field(default_factory=list)  # rows the current manifest rejected


def survey(store: Store) -> Survey:
    """Read the output once: the newest-record rule's columns of every record, then only the chunks of the
    newest finished records, in Arrow batches (no row is built in Python)."""
    index = load_index(store)
    newest = newest_records(store, committed_files(store, METADATA, index), committed_files(store, ERRORS, index))
    out = Survey(DatasetStats(superseded=newest.superseded), newest, manifest_errors=manifest_error_rows(store))
    ok = newest.table[OK]
    finished = newest.table.select([DURATION, REVISION, FILE, ROW]).filter(ok)
    out.stats.add_finished(pc.fill_null(finished[DURATION], 0.0).to_numpy(), finished[REVISION].to_numpy())
    out.stats.add_errors(newest.table[STAGE].filter(pc.invert(ok)))
    for *_, stage in newest.unkeyed:
        out.stats.add_error(stage)
    for row in out.manifest_errors:
        out.stats.add_error(row.get("stage"))
    places = rows_by_file(finished[FILE].to_numpy(), finished[ROW].to_numpy())
    flagged = [_add_chunks(store, out.stats, newest.files[number], number, rows) for number, rows in places.items()]
    out.flagged = pa.concat_tables([out.flagged, *flagged])
    return out


def _add_chunks(store: Store, stats: DatasetStats, path: str, number: int, rows: np.ndarray) -> pa.Table:
    """Add the chunks of the finished records at these sorted rows of file `number` to stats; returns where
    the flagged ones are (FLAGGED_SCHEMA)."""
    found, done = [], 0
    for batch in picked_batches(store, path, rows, CHUNK_COLUMNS, BATCH_ROWS):
        flagged, failed = stats.add_chunks(batch)
        at = rows[done : done + batch.num_rows]  # the batch holds the next of the wanted rows, in order
        done += batch.num_rows
        ids = batch.column("id").filter(pa.array(flagged)).cast(pa.string())
        places = [ids, pa.array(np.full(len(ids), number, np.int32)), pa.array(at[flagged]), pa.array(failed[flagged])]
        found.append(pa.Table.from_arrays(places, schema=FLAGGED_SCHEMA))
    return pa.concat_tables(found) if found else FLAGGED_SCHEMA.empty_table()
