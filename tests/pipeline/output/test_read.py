"""Reading picked rows of one committed file: the walk that export, book and the review page share."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.output.read import picked_batches
from pipeline.storage import Store


def test_picked_rows_come_in_order_whole_batches_as_read_and_reading_stops_after_the_last(tmp_path):
    pq.write_table(pa.table({"id": [f"r{n}" for n in range(10)], "n": list(range(10))}), tmp_path / "part.parquet")
    store = Store.open(str(tmp_path))
    read, path = [], store.path("part.parquet")
    wanted = np.array([0, 1, 2, 5, 6], np.int64)  # batches of 3: rows 0-2 all wanted, 3-5 one, 6-8 one, 9 never read
    batches = list(picked_batches(store, path, wanted, ["id"], batch_rows=3, on_batch=read.append))
    assert [b.column("id").to_pylist() for b in batches] == [["r0", "r1", "r2"], ["r5"], ["r6"]]
    assert batches[0].schema.names == ["id"] and read == [3, 3, 3]
