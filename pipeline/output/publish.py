"""Publishing the current view: journal parts folded into compacted view files, older records into history/.

A publish runs in the driver while it holds the output's lease, at a run's start (finishing an
interrupted publish, migrating an older release's layout) and at its end (before the verdict):

1. finish what the last publish's index still lists to delete (an interrupted clean-up);
2. read the view files and the journal parts through output/read.py and apply its rule: each id's
   newest record stays in the view, every other record goes to history/;
3. write the new view files and history files create-only under content-digest names (view files
   whose rows all stay and that are full and of the current schema are kept as they are), copying
   the audio of superseded metadata rows to history/<its key> and pointing their audio_path there;
4. write the view index (layout.VIEW_INDEX) in one atomic write: the commit point;
5. delete what it lists as retired, absorbed and moved, rewrite it without them, and remove view
   files no index lists (left by a publish that died before its commit).

Before step 4 the old index still describes the output; after it the new one does, and the
journal parts it absorbed are skipped by every barkpipe reader until they are gone. A crash at any
point loses nothing and doubles nothing for those readers, and the next publish finishes the job.
A reader of the folders (pandas, datasets) may see a row twice only between steps 3 and 5.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.output.commit import to_parquet
from pipeline.output.layout import ERRORS, METADATA, VIEW_INDEX, VIEW_PREFIX, history, part_glob, view_name
from pipeline.output.read import (
    AUDIO_PATH,
    ID,
    ViewIndex,
    journal_parts,
    load_index,
    newest_records,
    read_batches,
)
from pipeline.output.schema import error_schema
from pipeline.storage import Store

log = logging.getLogger(__name__)
KINDS = (METADATA, ERRORS)
# Rows per view file: a handful of files per hundred thousand rows, and one file's rows (metadata, no
# audio: a few kB each) are what a publish holds in memory at once.
VIEW_FILE_ROWS = 25_000
MOVE_THREADS = 8  # audio copies into history/ are one read and one create-only write each: overlap them
NONE_KEPT = np.zeros(0, np.int64)  # the rows of a file none of whose records stays
# Named between a publish's steps, for on_step (tests inject crashes there).
STEP_FILES, STEP_INDEX, STEP_DELETED = "files written", "index written", "deleted"


@dataclass
class Published:
    """What one publish did."""

    absorbed: int = 0  # journal parts folded into the view
    rows: dict = field(default_factory=dict)  # folder -> rows its files hold now (view and history)
    moved_audio: int = 0  # audio files copied to history/ (their originals deleted)
    duplicates: int = 0  # extra records of an id at its newest revision, kept in history/ (should be 0)
    duplicate_ids: list = field(default_factory=list)  # the first DUPLICATE_SAMPLES of those ids
    finished_earlier: bool = False  # an interrupted publish's clean-up was finished first


def publish(store: Store, *, rows_per_file: int = VIEW_FILE_ROWS,
            on_step: Callable[[str], None] | None = None) -> Published:  # fmt: skip
    """Fold the journal into the view (see the module docstring); a no-op when the journal is empty.

    Call only while holding the output's lease, with no writer of this output running. Idempotent.
    """
    step = on_step or (lambda name: None)
    out = Published()
    index = load_index(store)
    if index.pending:
        index = _delete_pending(store, index)
        out.finished_earlier = True
    parts = {kind: journal_parts(store, kind, index) for kind in KINDS}
    if not any(parts.values()):
        _sweep(store, index)
        out.rows = {folder: sum(f["rows"] for f in files) for folder, files in index.files.items()}
        return out
    sources = {kind: [store.path(p) for p in index.listed(kind)] + parts[kind] for kind in KINDS}
    newest = newest_records(store, sources[METADATA], sources[ERRORS])
    chosen = newest.kept_rows()
    new = ViewIndex(files={history(k): list(index.files.get(history(k), [])) for k in KINDS}, exists=True)
    new.absorbed = [_rel(store, p) for kind in KINDS for p in parts[kind]]
    first = 0
    for kind in KINDS:
        schemas = newest.schemas[first : first + len(sources[kind])]
        _publish_kind(store, kind, sources[kind], schemas, first, chosen, index, new, rows_per_file)
        first += len(sources[kind])
    # A rewrite may give a file the bytes, so the name, it had: it stays then.
    listed = {f["path"] for files in new.files.values() for f in files}
    new.retired = [p for p in new.retired if p not in listed]
    step(STEP_FILES)
    store.write(VIEW_INDEX, new.to_json())  # the commit point
    step(STEP_INDEX)
    _delete_pending(store, new)
    step(STEP_DELETED)
    _sweep(store, new)
    out.absorbed, out.moved_audio = len(new.absorbed), len(new.moved)
    out.rows = {folder: sum(f["rows"] for f in files) for folder, files in new.files.items()}
    out.duplicates, out.duplicate_ids = newest.duplicates()
    log.info("published the view: %d journal part(s) folded in, %d audio file(s) moved to %s",
             out.absorbed, out.moved_audio, history(""))  # fmt: skip
    return out


def _publish_kind(store: Store, kind: str, files: list[str], schemas: list[pa.Schema], first: int,
                  chosen: dict[int, np.ndarray], old: ViewIndex, new: ViewIndex, rows_per_file: int,
                  ) -> None:  # fmt: skip
    """Write kind's view and history files from its sources (view files first, then journal parts).

    chosen: file number -> the sorted rows that stay in the view (Newest.kept_rows)."""
    schema = _unify(kind, schemas) if schemas else error_schema() if kind == ERRORS else pa.schema([(ID, pa.string())])
    listed = old.files.get(kind, [])
    current = _Sink(store, kind, schema, rows_per_file)
    past = _Sink(store, history(kind), schema, rows_per_file)
    kept = []
    for number, path in enumerate(files, first):
        position = number - first
        entry = listed[position] if position < len(listed) else None
        stays = chosen.get(number, NONE_KEPT)
        if entry is not None and _keeps(entry, stays, schemas[position], schema, rows_per_file):
            kept.append(entry)
            continue
        if entry is not None:
            new.retired.append(entry["path"])
        row = 0
        for batch in read_batches(store, path):
            keep = np.zeros(batch.num_rows, bool)
            keep[stays[slice(*np.searchsorted(stays, [row, row + batch.num_rows]))] - row] = True
            mask = pa.array(keep)
            row += batch.num_rows
            current.add(_conform(batch.filter(mask), schema))
            superseded = _conform(batch.filter(pc.invert(mask)), schema)
            if kind == METADATA and superseded.num_rows:
                superseded = _move_audio(store, superseded, new.moved)
            past.add(superseded)
    new.files[kind] = kept + current.close()
    if not new.files[kind]:  # an empty file of the view's schema: readers of kind/ find a table, not nothing
        new.files[kind] = current.close(empty=True)
    new.files[history(kind)] += past.close()


def _keeps(entry: dict, stays: np.ndarray, schema: pa.Schema, unified: pa.Schema, rows_per_file: int) -> bool:
    """A view file stays as it is when every row of it stays, it is at least half full and of the view's schema."""
    rows = entry["rows"]
    return len(stays) == rows and rows >= rows_per_file // 2 and schema.equals(unified, check_metadata=False)


def _unify(kind: str, schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for kind's files (runs of different manifests carry different columns)."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"the {kind} parts of this output disagree on a column's type ({exc}); the view cannot hold them "
            "in one table: write runs of differently typed manifests to separate output.paths"
        ) from None


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """batch as a table of schema: absent columns null, types promoted (struct fields added via Python)."""
    table = pa.Table.from_batches([batch])
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    try:
        columns = [
            table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.Table.from_pylist(table.to_pylist(), schema=schema)  # a nested struct that gained fields


def _move_audio(store: Store, table: pa.Table, moved: list[str]) -> pa.Table:
    """Copy superseded rows' audio to history/<key> (create-only) and point their audio_path there.

    The originals are deleted only after the index that no longer names them is written.
    """
    keys = table[AUDIO_PATH].to_pylist() if AUDIO_PATH in table.column_names else []

    def move(key: str | None) -> str | None:
        if key is None:
            return None
        target = history(key)
        try:
            store.commit(target, store.read(key))  # False: a publish that died after copying it did so already
        except FileNotFoundError:
            if not store.exists(target):
                log.warning("audio %s of a superseded row is missing; its history row names %s", key, target)
        return target

    with ThreadPoolExecutor(max_workers=MOVE_THREADS) as pool:
        targets = list(pool.map(move, keys))
    moved.extend(k for k in keys if k is not None)
    if not keys:
        return table
    where = table.schema.get_field_index(AUDIO_PATH)
    return table.set_column(where, AUDIO_PATH, pa.array(targets, table.schema.field(where).type))


class _Sink:
    """Rows gathered into create-only files of about rows_per_file rows each, named by their digest."""

    def __init__(self, store: Store, folder: str, schema: pa.Schema, rows_per_file: int) -> None:
        self.store, self.folder, self.schema, self.rows_per_file = store, folder, schema, rows_per_file
        self.tables: list[pa.Table] = []
        self.rows = 0
        self.written: list[dict] = []

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.tables.append(table)
            self.rows += table.num_rows
        if self.rows >= self.rows_per_file:
            self._flush()

    def _flush(self, empty: bool = False) -> None:
        if not self.rows and not empty:
            return
        data = to_parquet(pa.concat_tables(self.tables) if self.tables else self.schema.empty_table())
        rel = view_name(self.folder, data)
        self.store.commit(rel, data)  # False: a publish that died before its commit wrote these bytes already
        self.written.append({"path": rel, "rows": self.rows})
        self.tables, self.rows = [], 0

    def close(self, empty: bool = False) -> list[dict]:
        """Write what is gathered; empty: write a file even without rows."""
        self._flush(empty)
        return self.written


def _delete_pending(store: Store, index: ViewIndex) -> ViewIndex:
    """Delete what index lists as retired, absorbed and moved; then rewrite it without them."""
    store.remove_files(index.pending)
    done = ViewIndex(files=index.files, exists=True)
    store.write(VIEW_INDEX, done.to_json())
    return done


def _sweep(store: Store, index: ViewIndex) -> None:
    """Remove view and history files no index lists: a publish that died before its commit wrote them."""
    unlisted = []
    for folder in (*KINDS, *(history(k) for k in KINDS)):
        listed = set(index.listed(folder))
        unlisted += [r for r in (_rel(store, p) for p in store.glob(part_glob(folder, VIEW_PREFIX))) if r not in listed]
    if unlisted:
        log.info("removing %d view file(s) of a publish that did not finish", len(unlisted))
        store.remove_files(unlisted)


def _rel(store: Store, path: str) -> str:
    return path[len(store.root) + 1 :]
