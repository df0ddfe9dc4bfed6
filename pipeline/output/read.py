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
from itertools import chain

import pyarrow as pa
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


@dataclass(slots=True)
class Record:
    """One id's newest record so far, where it is (file, row: positions in the files read), and how many
    records share its revision."""

    revision: int
    ok: bool
    value: object  # duration_s (ok) or stage (error)
    row_hash: str | None
    flagged: bool
    file: int = 0
    row: int = 0
    same_revision: int = 1


@dataclass
class Newest:
    """The rule's outcome over a list of files: per id its newest record, plus what it left aside."""

    files: list  # full paths: metadata files first, then errors files (Record.file indexes them)
    records: dict = field(default_factory=dict)  # id -> Record
    unkeyed: list = field(default_factory=list)  # (file, row, stage) of error rows without an id
    superseded: int = 0  # older records


def newest_records(store: Store, metadata_files: list[str], error_files: list[str]) -> Newest:
    """The module's rule over these files: each id's newest record, by position (publish moves the rest)."""
    out = Newest([*metadata_files, *error_files])
    records = chain(_records(store, metadata_files, 0, True), _records(store, error_files, len(metadata_files), False))
    for row_id, record in records:
        if row_id is None:
            out.unkeyed.append((record.file, record.row, record.value))
            continue
        best = out.records.get(row_id)
        if best is None or record.revision > best.revision:
            out.superseded += best.same_revision if best is not None else 0
            out.records[row_id] = record
        elif record.revision < best.revision:
            out.superseded += 1
        elif record.ok and not best.ok:  # a duplicate: the ok record is kept (its audio exists)
            record.same_revision = best.same_revision + 1
            out.records[row_id] = record
        else:
            best.same_revision += 1
    return out


def _records(store: Store, files: list[str], first: int, ok: bool) -> Iterator[tuple[str | None, Record]]:
    columns = (ID, DURATION, ROW_HASH, REVISION, FLAGGED) if ok else (ID, STAGE, ROW_HASH, REVISION)
    for number, path in enumerate(files, first):
        row = 0
        for rows in scan(store, METADATA if ok else ERRORS, columns, files=[path]):
            for r in rows:
                value = r[DURATION] if ok else r[STAGE]
                flagged = bool(r[FLAGGED]) if ok else False
                yield r[ID], Record(r[REVISION] or 0, ok, value, r[ROW_HASH], flagged, number, row)
                row += 1


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


def read_committed_latest(store: Store, index: ViewIndex | None = None) -> Latest:
    """Every committed record (view and journal), reduced to the newest record per id (the module's rule)."""
    index = index if index is not None else load_index(store)
    newest = newest_records(store, committed_files(store, METADATA, index), committed_files(store, ERRORS, index))
    out = Latest(superseded=newest.superseded)
    for row_id, record in newest.records.items():
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
    out.errors.extend((None, stage) for _, _, stage in newest.unkeyed)
    return out


def newest_rows(store: Store, kind: str, columns: Sequence[str] | None = None, *, latest: Latest | None = None,
                batch_rows: int = BATCH_ROWS, on_batch: Callable[[int], None] | None = None,
                ) -> Iterator[dict]:  # fmt: skip
    """Each id's newest record of kind as a row, once, in file order: METADATA gives the ids whose newest
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
