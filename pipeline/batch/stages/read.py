"""The run's first stage: one manifest file's rows, less the ids the run skips, in Arrow blocks."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads

from pipeline.manifest.columns import ID


def read_rows(batch, *, fs, schema, renames: dict, skip, block_rows: int = 1024):
    """Ray Data map_batches function: the manifest rows of one file (batch: one `path`), in blocks.

    skip: the ids to drop (a pyarrow string array or a list)."""
    # Built once per task: Arrow's is_in would hash the whole skip list again for every block.
    lookup = frozenset(skip.to_pylist() if isinstance(skip, pa.Array) else skip)
    for path in batch["path"].to_pylist():
        dataset = pads.dataset(path, filesystem=fs, format="parquet", schema=schema)  # the unified schema
        for record_batch in dataset.to_batches(batch_size=block_rows):
            table = pa.Table.from_batches([record_batch], schema=schema)
            if renames:
                table = table.rename_columns([renames.get(n, n) for n in table.column_names])
            yield drop_ids(table, lookup)


def drop_ids(batch, skip: frozenset):
    """Rows whose id is null, bad, duplicated or already committed never reach the actors."""
    ids = batch[ID].cast(pa.string()).to_pylist()  # large_string manifests compare as str too
    return batch.filter(pa.array([i is not None and i not in skip for i in ids], pa.bool_()))
