"""Reading the output back: every committed part, reduced to each id's newest record (one rule, one reader).

How a redone row is replaced without being lost or doubled (parts stay create-only, never deleted):
a row's first write is revision 0; redoing it (content changed, --retry-errors, --redo) writes a
new metadata or errors row with revision = its latest revision + 1, in a new part (the part name's
digest covers `id@revision`) and with its own audio name. Until that part is committed the old
record is still the newest one, so a run that dies halfway loses nothing; once it is committed the
old record is superseded.

The rule, applied here and nowhere else: per id, the record with the highest revision is its
newest; metadata and errors records compete alike. Two records of one id at the SAME revision are
a real bug (two writers, a block written twice): they are counted as duplicates (the verdict
names them) and the ok record is kept, since its audio exists. Parts written before the resume
columns (row_hash, revision) existed read as revision 0 with an unknown hash.

read_committed_latest reads only the few columns the decision needs, part by part; newest_rows
then streams the chosen records with whatever columns a reader asks for, a batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

import pyarrow.parquet as pq

from pipeline.output.layout import ERRORS, MANIFEST_PREFIX, METADATA, part_glob
from pipeline.storage import Store, retry

ID, ROW_HASH, REVISION, FLAGGED = "id", "row_hash", "revision", "flagged"
DURATION, STAGE = "duration_s", "stage"
DUPLICATE_SAMPLES = 20  # ids named in the duplicates list; the count covers them all
BATCH_ROWS = 1_000  # rows a reader holds at once (metadata rows, no audio)


@dataclass
class Latest:
    """The newest committed record per id: what resume, the accounting verdict and the readers decide by."""

    ok: dict = field(default_factory=dict)  # id -> duration_s, ids whose newest record is a metadata row
    errors: list = field(default_factory=list)  # (id, stage) of ids whose newest record is an error row
    duplicate_ok: int = 0  # extra records of an id at its latest revision (should stay 0)
    duplicate_ids: list = field(default_factory=list)  # the first DUPLICATE_SAMPLES of those ids
    superseded: int = 0  # older records ignored
    hashes: dict = field(default_factory=dict)  # id -> stored row_hash of its newest record (None: not recorded)
    revisions: dict = field(default_factory=dict)  # id -> latest revision
    flagged: set = field(default_factory=set)  # ok ids whose newest record is flagged

    @property
    def done_ids(self) -> set:
        return set(self.ok) | {i for i, _ in self.errors if i is not None}

    @property
    def ok_hashes(self) -> dict:
        return {i: self.hashes.get(i) for i in self.ok}

    @property
    def error_stages(self) -> dict:
        return {i: stage for i, stage in self.errors if i is not None}

    @property
    def error_hashes(self) -> dict:
        return {i: self.hashes.get(i) for i, _ in self.errors if i is not None}


@dataclass
class _Newest:
    """One id's newest record so far, and how many records share its revision."""

    revision: int
    ok: bool
    value: object  # duration_s (ok) or stage (error)
    row_hash: str | None
    flagged: bool
    same_revision: int = 1


def scan(store: Store, kind: str, columns: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS,
         prefix: str | None = None) -> Iterator[list[dict]]:  # fmt: skip
    """Rows of kind's committed parts (METADATA or ERRORS), a batch at a time, part by part in name order.

    columns: only these (a column a part lacks reads as None); None: every column each part has.
    Maps arrive as dicts. prefix: other parts of kind (layout.MANIFEST_PREFIX), else the block parts.
    """
    for path in store.glob(part_glob(kind) if prefix is None else part_glob(kind, prefix)):
        handle = retry(store.fs.open, path, "rb", budget_s=store.retry_s, what=path)
        with handle, pq.ParquetFile(handle) as part:
            present = part.schema_arrow.names
            names = None if columns is None else [c for c in columns if c in present]
            lacking = [] if columns is None else [c for c in columns if c not in present]
            for batch in part.iter_batches(batch_size=batch_rows, columns=names):
                rows = batch.to_pylist(maps_as_pydicts="lossy")
                if lacking:
                    rows = [dict.fromkeys(lacking) | row for row in rows]
                yield rows


def read_committed_latest(store: Store) -> Latest:
    """Every committed metadata/errors part, reduced to the newest record per id (the module's rule)."""
    newest: dict[str, _Newest] = {}
    unkeyed: list = []  # error rows without an id: kept as they are
    superseded = 0
    for row_id, record in chain(_ok_records(store), _error_records(store)):
        if row_id is None:
            unkeyed.append((None, record.value))
            continue
        best = newest.get(row_id)
        if best is None or record.revision > best.revision:
            superseded += best.same_revision if best is not None else 0
            newest[row_id] = record
        elif record.revision < best.revision:
            superseded += 1
        else:  # a duplicate: the ok record is kept (its audio exists)
            if record.ok and not best.ok:
                newest[row_id], record.same_revision = record, best.same_revision
            newest[row_id].same_revision += 1
    return _latest(newest, unkeyed, superseded)


def _ok_records(store: Store) -> Iterator[tuple[str | None, _Newest]]:
    for rows in scan(store, METADATA, (ID, DURATION, ROW_HASH, REVISION, FLAGGED)):
        for row in rows:
            yield row[ID], _Newest(row[REVISION] or 0, True, row[DURATION], row[ROW_HASH], bool(row[FLAGGED]))


def _error_records(store: Store) -> Iterator[tuple[str | None, _Newest]]:
    for rows in scan(store, ERRORS, (ID, STAGE, ROW_HASH, REVISION)):
        for row in rows:
            yield row[ID], _Newest(row[REVISION] or 0, False, row[STAGE], row[ROW_HASH], False)


def _latest(newest: dict[str, _Newest], unkeyed: list, superseded: int) -> Latest:
    out = Latest(superseded=superseded)
    for row_id, record in newest.items():
        if record.same_revision > 1:
            out.duplicate_ok += record.same_revision - 1
            if len(out.duplicate_ids) < DUPLICATE_SAMPLES:
                out.duplicate_ids.append(row_id)
        out.revisions[row_id] = record.revision
        out.hashes[row_id] = record.row_hash
        if record.ok:
            out.ok[row_id] = record.value
            if record.flagged:
                out.flagged.add(row_id)
        else:
            out.errors.append((row_id, record.value))
    out.errors.extend(unkeyed)
    return out


def newest_rows(store: Store, kind: str, columns: Sequence[str] | None = None, *, latest: Latest | None = None,
                batch_rows: int = BATCH_ROWS, on_batch: Callable[[int], None] | None = None,
                ) -> Iterator[dict]:  # fmt: skip
    """Each id's newest record of kind as a row, once, in part order: METADATA gives the ids whose newest
    record is ok, ERRORS those whose newest record is an error (and error rows without an id).

    columns: only these (plus id and revision), None: every column. latest: read_committed_latest(store)
    when the caller has it already. on_batch(rows): called per batch read (progress, tests).
    """
    latest = latest if latest is not None else read_committed_latest(store)
    chosen = latest.ok if kind == METADATA else latest.error_stages
    wanted = None if columns is None else list(dict.fromkeys((ID, REVISION, *columns)))
    taken: set[str] = set()  # a duplicate at the newest revision goes out once
    for rows in scan(store, kind, wanted, batch_rows):
        if on_batch is not None:
            on_batch(len(rows))
        for row in rows:
            row_id = row.get(ID)
            if row_id is None:
                yield row
            elif row_id in chosen and row_id not in taken and (row.get(REVISION) or 0) == latest.revisions[row_id]:
                taken.add(row_id)
                yield row


def manifest_error_rows(store: Store) -> list[dict]:
    """The rows the current manifest had rejected (null or repeated ids), as the last run recorded them."""
    return [row for rows in scan(store, ERRORS, prefix=MANIFEST_PREFIX) for row in rows]
