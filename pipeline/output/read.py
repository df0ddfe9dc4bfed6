"""Reading the output back: the published view plus unpublished journal parts, reduced to each id's newest record.

Where records are: workers commit create-only parts into the journal (layout.journal); a publish
(output/publish.py) folds them into the view (metadata/ and errors/ view files listed in the view
index, layout.VIEW_INDEX) and moves superseded records to history/. The committed records are the
index's view files plus every journal part the index does not list as absorbed (an older
release's parts, straight in metadata/ and errors/, count as journal parts), so this reader is
exact at every instant, in the middle of a publish too.

How a redone row is replaced without being lost or doubled: a row's first write is revision 0;
redoing it (content changed, --retry-errors, --redo) writes a new metadata or errors row with
revision = its latest revision + 1, in a new part (the part name's digest covers `id@revision`)
and with its own audio name. Until that part is committed the old record is still the newest
one, so a run that dies halfway loses nothing; once it is committed the old record is superseded.

The rule, applied here and nowhere else: per id, the record with the highest revision is its
newest; metadata and errors records compete alike. Two records of one id at the SAME revision are
a real bug (two writers, a block written twice): they are counted as duplicates (the verdict
names them) and the ok record is kept, since its audio exists. Parts written before the resume
columns (row_hash, revision) existed read as revision 0 with an unknown hash.

read_committed_latest reads only the few columns the decision needs, file by file; newest_rows
then streams the chosen records with whatever columns a reader asks for, a batch at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.output.layout import (
    ERRORS,
    MANIFEST_PREFIX,
    METADATA,
    VIEW_INDEX,
    history,
    journal,
    part_glob,
)
from pipeline.storage import Store, retry

ID, ROW_HASH, REVISION, FLAGGED = "id", "row_hash", "revision", "flagged"
DURATION, STAGE, AUDIO_PATH = "duration_s", "stage", "audio_path"
DUPLICATE_SAMPLES = 20  # ids named in the duplicates list; the count covers them all
BATCH_ROWS = 1_000  # rows a reader holds at once (metadata rows, no audio)
INDEX_VERSION = 1  # the view index's format


@dataclass
class ViewIndex:
    """The view index (layout.VIEW_INDEX): the published files, and what its publish still has to delete.

    files: folder (METADATA, ERRORS, history(METADATA), history(ERRORS)) -> [{"path": rel, "rows": n}].
    absorbed: journal parts whose rows the listed files hold (readers skip them until they are deleted);
    retired: files of the previous view; moved: audio keys copied to history/. Paths relative to the root.
    """

    files: dict = field(default_factory=dict)
    absorbed: list = field(default_factory=list)
    retired: list = field(default_factory=list)
    moved: list = field(default_factory=list)
    exists: bool = False

    def listed(self, folder: str) -> list[str]:
        return [f["path"] for f in self.files.get(folder, [])]

    @property
    def pending(self) -> list[str]:
        """What the publish that wrote this index has still to delete."""
        return [*self.retired, *self.absorbed, *self.moved]

    def to_json(self) -> bytes:
        record = {"version": INDEX_VERSION, "files": self.files, "absorbed": self.absorbed,
                  "retired": self.retired, "moved": self.moved}  # fmt: skip
        return json.dumps(record, indent=1, sort_keys=True).encode()


def load_index(store: Store) -> ViewIndex:
    """The view index, or an empty one (exists=False) where no publish has run yet."""
    try:
        record = json.loads(store.read(VIEW_INDEX))
    except FileNotFoundError:
        return ViewIndex()
    version = record.get("version") if isinstance(record, dict) else None
    if version != INDEX_VERSION:
        raise ValueError(
            f"{store.url(VIEW_INDEX)} is not a view index this barkpipe reads (version {version!r}, this one "
            f"reads {INDEX_VERSION}); upgrade barkpipe, or run into a new output.path"
        )
    return ViewIndex(record.get("files", {}), record.get("absorbed", []), record.get("retired", []),
                     record.get("moved", []), exists=True)  # fmt: skip


def journal_parts(store: Store, kind: str, index: ViewIndex | None = None) -> list[str]:
    """kind's committed parts not yet in the view (full paths): the journal's, then an older release's
    parts straight in kind/, less those the index lists as absorbed."""
    index = index if index is not None else load_index(store)
    absorbed = {store.path(p) for p in index.absorbed}
    found = store.glob(part_glob(journal(kind))) + store.glob(part_glob(kind))
    return [p for p in found if p not in absorbed]


def committed_files(store: Store, kind: str, index: ViewIndex | None = None) -> list[str]:
    """Every file of kind's committed records (full paths): the view's files, then the journal parts."""
    index = index if index is not None else load_index(store)
    return [store.path(p) for p in index.listed(kind)] + journal_parts(store, kind, index)


def history_files(store: Store, kind: str, index: ViewIndex | None = None) -> list[str]:
    """kind's published history files (full paths): the records newer ones superseded."""
    index = index if index is not None else load_index(store)
    return [store.path(p) for p in index.listed(history(kind))]


def read_batches(store: Store, path: str, columns: Sequence[str] | None = None,
                 batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """One file's rows as Arrow batches; columns: only these (a column the file lacks is a null column)."""
    handle = retry(store.fs.open, path, "rb", budget_s=store.retry_s, what=path)
    with handle, pq.ParquetFile(handle) as part:
        present = part.schema_arrow.names
        names = None if columns is None else [c for c in columns if c in present]
        lacking = [] if columns is None else [c for c in columns if c not in present]
        for batch in part.iter_batches(batch_size=batch_rows, columns=names):
            for name in lacking:
                batch = batch.append_column(name, pa.nulls(batch.num_rows))
            yield batch


def read_schema(store: Store, path: str) -> pa.Schema:
    """One file's schema, from its footer."""

    def footer() -> pa.Schema:
        with store.fs.open(path, "rb") as f:
            return pq.read_schema(f)

    return retry(footer, budget_s=store.retry_s, what=path)


def scan(store: Store, kind: str, columns: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS,
         prefix: str | None = None, files: Iterable[str] | None = None) -> Iterator[list[dict]]:  # fmt: skip
    """Rows of kind's committed files (METADATA or ERRORS), a batch at a time, file by file.

    columns: only these (a column a file lacks reads as None); None: every column each file has.
    Maps arrive as dicts. prefix: kind's other parts (layout.MANIFEST_PREFIX) instead. files: these instead.
    """
    if files is None:
        files = committed_files(store, kind) if prefix is None else store.glob(part_glob(kind, prefix))
    for path in files:
        for batch in read_batches(store, path, columns, batch_rows):
            yield batch.to_pylist(maps_as_pydicts="lossy")


# What the rule reads of each record, one Arrow row per record: the driver holds these columns for a
# whole output (a million ids: about 124 MB, row hashes most of it), never a Python object per record.
OK, FILE, ROW, SAME_REVISION = "ok", "file", "row", "same_revision"
RECORD_SCHEMA = pa.schema([(ID, pa.string()), (REVISION, pa.int64()), (OK, pa.bool_()), (DURATION, pa.float64()),
                           (STAGE, pa.string()), (ROW_HASH, pa.string()), (FLAGGED, pa.bool_()), (FILE, pa.int32()),
                           (ROW, pa.int64())])  # fmt: skip
NEWEST_SCHEMA = RECORD_SCHEMA.append(pa.field(SAME_REVISION, pa.int64()))
# The rule as a sort: per id the highest revision first, at one revision an ok record before an error
# (its audio exists), then the first in file order.
RULE_ORDER = [(ID, "ascending"), (REVISION, "descending"), (OK, "descending"), (FILE, "ascending"), (ROW, "ascending")]


@dataclass
class Newest:
    """The rule's outcome over a list of files: per id its newest record, plus what it left aside."""

    files: list  # full paths: metadata files first, then errors files (FILE indexes them)
    table: pa.Table = field(default_factory=NEWEST_SCHEMA.empty_table)  # one row per id, sorted by id
    unkeyed: list = field(default_factory=list)  # (file, row, stage) of error rows without an id
    superseded: int = 0  # older records
    schemas: list = field(default_factory=list)  # each file's schema, from the footer the same pass read
    metadata_count: int = 0  # files[:metadata_count] are metadata files

    def kept_rows(self) -> dict[int, np.ndarray]:
        """file number -> sorted row numbers that stay in the view: each id's newest record, and error rows
        without an id."""
        files = np.concatenate([self.table[FILE].to_numpy(), np.array([f for f, _, _ in self.unkeyed], np.int32)])
        rows = np.concatenate([self.table[ROW].to_numpy(), np.array([r for _, r, _ in self.unkeyed], np.int64)])
        return rows_by_file(files, rows)

    def duplicates(self) -> tuple[int, list[str]]:
        """(extra records at ids' newest revisions, the first DUPLICATE_SAMPLES of those ids in id order)."""
        doubled = self.table.filter(pc.greater(self.table[SAME_REVISION], 1))
        extra = int(pc.sum(doubled[SAME_REVISION]).as_py() or 0) - doubled.num_rows
        return extra, doubled[ID].slice(0, DUPLICATE_SAMPLES).to_pylist()


def rows_by_file(files: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
    """file number -> its sorted row numbers, of these places (files [n] and rows [n]: FILE and ROW values)."""
    order = np.lexsort((rows, files))
    files, rows = files[order], rows[order]
    bounds = np.flatnonzero(np.diff(files)) + 1
    return {int(f[0]): r for f, r in zip(np.split(files, bounds), np.split(rows, bounds), strict=True) if len(f)}


def newest_records(store: Store, metadata_files: list[str], error_files: list[str]) -> Newest:
    """The module's rule over these files: each id's newest record, by position (publish moves the rest).

    Each file is opened once; its schema comes along (publish needs it). The records are reduced in
    Arrow: a sort by RULE_ORDER, then the first record per id.
    """
    out = Newest([*metadata_files, *error_files], metadata_count=len(metadata_files))
    parts: list[pa.Table] = []
    distinct: list[pa.Schema] = []
    for number, path in enumerate(out.files):
        schema, part = _record_columns(store, path, number, ok=number < len(metadata_files))
        out.schemas.append(_shared(schema, distinct))
        parts.append(part)
    # One chunk: a sort or take over thousands of small journal parts' chunks is many times slower.
    records = pa.concat_tables(parts).combine_chunks() if parts else RECORD_SCHEMA.empty_table()
    del parts
    keyed = pc.is_valid(records[ID])
    if not pc.all(keyed).as_py():
        lost = records.filter(pc.invert(keyed))
        out.unkeyed = list(zip(lost[FILE].to_pylist(), lost[ROW].to_pylist(), lost[STAGE].to_pylist(), strict=True))
        records = records.filter(keyed)
    count = records.num_rows
    if not count:
        return out
    # Sorted by the rule's keys only; the whole record is copied once, for each id's newest.
    order = pc.sort_indices(records.select([ID, REVISION, OK, FILE, ROW]), sort_keys=RULE_ORDER).to_numpy()
    ids = records[ID].take(order).combine_chunks()
    revisions = records[REVISION].to_numpy()[order]
    same_id = np.zeros(count, bool)
    same_id[1:] = pc.equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
    same_revision = np.zeros(count, bool)
    same_revision[1:] = same_id[1:] & (revisions[1:] == revisions[:-1])
    group = np.cumsum(~same_revision) - 1  # runs of one id at one revision
    first = np.flatnonzero(~same_id)  # each id's newest record, in sorted order
    shared = np.bincount(group)[group[first]]
    out.table = records.take(order[first]).append_column(SAME_REVISION, pa.array(shared, pa.int64()))
    out.superseded = int(count - shared.sum())
    return out


def _shared(schema: pa.Schema, distinct: list[pa.Schema]) -> pa.Schema:
    """schema, or the equal one met before: thousands of journal parts share a few schemas, and thousands of
    live Schema objects made every later Parquet open slower (a publish's rewrite pass took 1.6x as long)."""
    for known in distinct:
        if known.equals(schema, check_metadata=True):
            return known
    distinct.append(schema)
    return schema


def _record_columns(store: Store, path: str, number: int, ok: bool) -> tuple[pa.Schema, pa.Table]:
    """(the file's schema, its records as RECORD_SCHEMA rows), from one open of the file."""
    wanted = (ID, DURATION, ROW_HASH, REVISION, FLAGGED) if ok else (ID, STAGE, ROW_HASH, REVISION)

    def read() -> tuple[pa.Schema, pa.Table]:
        with store.fs.open(path, "rb") as handle, pq.ParquetFile(handle) as part:
            schema = part.schema_arrow
            return schema, part.read(columns=[c for c in wanted if c in schema.names])

    schema, table = retry(read, budget_s=store.retry_s, what=path)
    n = table.num_rows

    def column(name: str, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
        return table[name].cast(kind) if name in table.column_names else pa.nulls(n, kind)

    arrays = [
        column(ID, pa.string()),
        pc.fill_null(column(REVISION, pa.int64()), 0),
        pa.array(np.full(n, ok)),
        column(DURATION, pa.float64()) if ok else pa.nulls(n, pa.float64()),
        pa.nulls(n, pa.string()) if ok else column(STAGE, pa.string()),
        column(ROW_HASH, pa.string()),
        pc.fill_null(column(FLAGGED, pa.bool_()), False) if ok else pa.array(np.zeros(n, bool)),
        pa.array(np.full(n, number, np.int32)),
        pa.array(np.arange(n, dtype=np.int64)),
    ]
    return schema, pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)


@dataclass
class Latest:
    """The newest committed record per id: what resume, the accounting verdict and the readers decide by.

    newest.table holds one row per id. The dicts below are built from it on first use: a caller
    that only counts, or matches ids in Arrow, never makes a Python object per id.
    """

    newest: Newest = field(default_factory=lambda: Newest([]))
    duplicate_ok: int = 0  # extra records of an id at its latest revision (should stay 0)
    duplicate_ids: list = field(default_factory=list)  # the first DUPLICATE_SAMPLES of those ids
    superseded: int = 0  # older records ignored

    @classmethod
    def of(cls, ok: dict | None = None, errors: Iterable[tuple] = (), **fields) -> Latest:
        """A Latest of these records, read from no file (ok: id -> duration_s, errors: (id, stage)), at revision 0."""
        ok, errors = ok or {}, list(errors)
        rows = [{ID: i, REVISION: 0, OK: True, DURATION: d, FLAGGED: False} for i, d in ok.items()]
        rows += [{ID: i, REVISION: 0, OK: False, STAGE: stage, FLAGGED: False} for i, stage in errors if i is not None]
        table = pa.Table.from_pylist([r | {SAME_REVISION: 1} for r in rows], schema=NEWEST_SCHEMA)
        unkeyed = [(-1, -1, stage) for i, stage in errors if i is None]
        return cls(Newest([], table, unkeyed), **fields)

    @cached_property
    def _ok_table(self) -> pa.Table:
        return self.newest.table.filter(self.newest.table[OK])

    @cached_property
    def _error_table(self) -> pa.Table:
        return self.newest.table.filter(pc.invert(self.newest.table[OK]))

    @property
    def ok_count(self) -> int:
        return self._ok_table.num_rows

    @property
    def error_count(self) -> int:
        """Ids whose newest record is an error, and error rows without an id."""
        return self._error_table.num_rows + len(self.newest.unkeyed)

    def ok_table(self) -> pa.Table:
        """The newest records that are ok (read.NEWEST_SCHEMA), one per id."""
        return self._ok_table

    def error_ids(self) -> pa.Array:
        """Ids whose newest record is an error."""
        return self._error_table[ID].combine_chunks()

    @cached_property
    def ok(self) -> dict:
        """id -> duration_s of the ids whose newest record is a metadata row."""
        return dict(zip(self._ok_table[ID].to_pylist(), self._ok_table[DURATION].to_pylist(), strict=True))

    @cached_property
    def errors(self) -> list:
        """(id, stage) of the ids whose newest record is an error row; (None, stage) for rows without an id."""
        keyed = zip(self._error_table[ID].to_pylist(), self._error_table[STAGE].to_pylist(), strict=True)
        return [*keyed, *((None, stage) for *_, stage in self.newest.unkeyed)]

    @cached_property
    def hashes(self) -> dict:
        """id -> stored row_hash of its newest record (None: not recorded)."""
        return dict(zip(self.newest.table[ID].to_pylist(), self.newest.table[ROW_HASH].to_pylist(), strict=True))

    @cached_property
    def revisions(self) -> dict:
        """id -> latest revision."""
        return dict(zip(self.newest.table[ID].to_pylist(), self.newest.table[REVISION].to_pylist(), strict=True))

    @cached_property
    def flagged(self) -> set:
        """ok ids whose newest record is flagged."""
        return set(self._ok_table.filter(self._ok_table[FLAGGED])[ID].to_pylist())

    @property
    def done_count(self) -> int:
        """Ids with a committed record."""
        return self.newest.table.num_rows

    def recorded(self, ids: Iterable) -> set:
        """Those of ids (strings; others are ignored) that have a committed record."""
        asked = pa.array([i for i in ids if isinstance(i, str)], pa.string())
        return set(asked.filter(pc.is_in(asked, value_set=self.newest.table[ID].combine_chunks())).to_pylist())


def read_committed_latest(store: Store, index: ViewIndex | None = None) -> Latest:
    """Every committed record (view and journal), reduced to the newest record per id (the module's rule)."""
    index = index if index is not None else load_index(store)
    newest = newest_records(store, committed_files(store, METADATA, index), committed_files(store, ERRORS, index))
    return Latest(newest, *newest.duplicates(), newest.superseded)


def newest_rows(store: Store, kind: str, columns: Sequence[str] | None = None, *, latest: Latest | None = None,
                batch_rows: int = BATCH_ROWS, on_batch: Callable[[int], None] | None = None,
                ) -> Iterator[dict]:  # fmt: skip
    """Each id's newest record of kind as a row, once, in file order: METADATA gives the ids whose newest
    record is ok, ERRORS those whose newest record is an error (and error rows without an id).

    columns: only these (plus id and revision), None: every column. latest: read_committed_latest(store)
    when the caller has it already. on_batch(rows): called per batch read (progress, tests).
    """
    newest = (latest if latest is not None else read_committed_latest(store)).newest
    kept = newest.kept_rows()
    numbers = range(newest.metadata_count) if kind == METADATA else range(newest.metadata_count, len(newest.files))
    wanted = None if columns is None else list(dict.fromkeys((ID, REVISION, *columns)))
    for number in numbers:
        if number in kept:
            for batch in picked_batches(store, newest.files[number], kept[number], wanted, batch_rows, on_batch):
                yield from batch.to_pylist(maps_as_pydicts="lossy")


def picked_batches(store: Store, path: str, rows: np.ndarray, columns: Sequence[str] | None = None,
                   batch_rows: int = BATCH_ROWS, on_batch: Callable[[int], None] | None = None,
                   ) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """The rows at these sorted positions of one file (positions as Newest counts them), in order, batch by
    batch; a batch whose rows are all wanted (a published view) goes out as it was read. Reading stops after
    the last wanted row. columns: as read_batches; on_batch(rows): called per batch read (progress, tests).
    """
    start = 0
    for batch in read_batches(store, path, columns, batch_rows):
        if on_batch is not None:
            on_batch(batch.num_rows)
        end = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, end])
        if hi - lo == batch.num_rows:
            yield batch
        elif hi > lo:
            yield batch.take(pa.array(rows[lo:hi] - start))
        start = end
        if hi == len(rows):
            return


def manifest_error_rows(store: Store) -> list[dict]:
    """The rows the current manifest had rejected (null or repeated ids), as the last run recorded them."""
    return [row for rows in scan(store, ERRORS, prefix=MANIFEST_PREFIX) for row in rows]
