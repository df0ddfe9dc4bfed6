"""Which rows a review page lists: flagged first, then errors, then ok rows if asked; capped per page.

Each section is ordered in Arrow over the survey's columns (a million ids stay a million table rows,
never a million Python objects), and only the page's slice of it is read in full: a page costs its
own rows, whatever the output's size.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.output.read import FILE, ID, ROW, picked_batches
from pipeline.output.read import OK as OK_COLUMN  # OK here is the section
from pipeline.review import MAX_ROWS
from pipeline.review.survey import FAILED, Survey
from pipeline.storage import Store

FLAGGED, ERRORS, OK = 0, 1, 2  # the listing's sections, in page order
# --only's choices and the sections each lists; none given: flagged and error rows (+ --sample-ok's).
ONLY = {"flagged": (FLAGGED,), "errors": (ERRORS,), "all": (FLAGGED, ERRORS, OK)}
SECTIONS = {FLAGGED: "Flagged rows", ERRORS: "Error rows", OK: "Other rows"}
LISTED = {FLAGGED: "flagged", ERRORS: "errors", OK: "ok"}  # the sections as the page's header names them
SAMPLE_DIGEST_CHARS = 16  # a stable pseudo-random order of ok rows, for --sample-ok
MANIFEST_FILE = -1  # the "file" of a manifest's rejected row: it is read from Survey.manifest_errors
SORT_KEY = "key"  # what error rows sort by: the id, "" for a row without one
DIGEST_BATCH = 10_000  # ids turned into Python strings at once, to draw --sample-ok's rows


@dataclass(frozen=True)
class Choice:
    """What the page lists (`--only`, `--sample-ok`) and which slice of it (`--max-rows`, `--page`)."""

    only: str | None = None
    sample_ok: int = 0
    max_rows: int = MAX_ROWS
    page: int = 1

    def __post_init__(self) -> None:
        if self.only is not None and self.only not in ONLY:
            raise ValueError(f"--only {self.only!r} is not one of {', '.join(ONLY)}")
        for name, value, least in (("--max-rows", self.max_rows, 1), ("--page", self.page, 1),
                                   ("--sample-ok", self.sample_ok, 0)):  # fmt: skip
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if self.sample_ok and self.only is not None:
            raise ValueError(
                f"--sample-ok adds ok rows to the flagged and error rows; drop --only {self.only} (or --sample-ok)"
            )

    @property
    def sections(self) -> tuple[int, ...]:
        if self.only is not None:
            return ONLY[self.only]
        return (FLAGGED, ERRORS, OK) if self.sample_ok else (FLAGGED, ERRORS)


@dataclass
class Shown:
    """One listed row of the page: a finished row's metadata record, or an error row's."""

    section: int
    id: str
    record: dict = field(default_factory=dict)
    failed: int = 0  # failed chunks (flagged rows)


@dataclass
class Listing:
    """This page's rows in order, and where each section lies in the whole listing."""

    choice: Choice
    totals: dict  # section -> rows listed
    rows: list  # [Shown] of this page

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.choice.max_rows))

    @property
    def first(self) -> int:
        """The page's first row's place in the listing (0-based)."""
        return (self.choice.page - 1) * self.choice.max_rows

    def section_pages(self, section: int) -> tuple[int, int]:
        """The first and last page a section's rows are on (1-based)."""
        start = sum(n for s, n in self.totals.items() if s < section)
        end = start + max(self.totals[section], 1) - 1
        return start // self.choice.max_rows + 1, end // self.choice.max_rows + 1


def list_rows(store: Store, found: Survey, choice: Choice) -> Listing:
    """The page's rows: each section's slice on the page is picked in Arrow, then only those rows are read."""
    totals = _totals(found, choice)
    listing = Listing(choice, totals, [])
    if choice.page > listing.pages:
        raise ValueError(
            f"--page {choice.page} is past the last page: {listing.total} row(s) listed, "
            f"{choice.max_rows} a page, {listing.pages} page(s)"
        )
    places = _places(found, choice, totals, listing.first)
    records = _read(store, found, [(file, row) for _, file, row, _, _ in places])
    for section, file, row, row_id, failed in places:
        record = records[(file, row)]
        listing.rows.append(Shown(section, str(record.get("id") if row_id is None else row_id), record, failed))
    return listing


def _totals(found: Survey, choice: Choice) -> dict:
    ok = found.stats.finished - found.flagged.num_rows
    counts = {FLAGGED: found.flagged.num_rows, ERRORS: found.stats.errors, OK: ok}
    if choice.only is None and choice.sample_ok:
        counts[OK] = min(ok, choice.sample_ok)
    return {s: counts[s] for s in choice.sections}


def _places(found: Survey, choice: Choice, totals: dict, first: int) -> list[tuple]:
    """(section, file, row, id, failed chunks) of the page's rows in page order: the part of each section's
    sorted rows that falls on the page. id: None for a row without one (its record names it)."""
    out: list[tuple] = []
    start = 0  # the section's first row's place in the listing
    for section, total in totals.items():
        lo, hi = max(first - start, 0), min(first + choice.max_rows - start, total)
        if hi > lo:
            out += [(section, *place) for place in _section_rows(found, choice, section, lo, hi)]
        start += total
    return out


def _section_rows(found: Survey, choice: Choice, section: int, lo: int, hi: int) -> list[tuple]:
    """(file, row, id, failed chunks) of a section's rows lo..hi-1, in its order."""
    if section == FLAGGED:  # most failed chunks first
        order = pc.sort_indices(found.flagged, sort_keys=[(FAILED, "descending"), (ID, "ascending")])
        return _rows(found.flagged.take(order[lo:hi]))
    if section == ERRORS:
        places = _error_places(found)
        order = pc.sort_indices(places, sort_keys=[(SORT_KEY, "ascending"), (FILE, "ascending"), (ROW, "ascending")])
        return _rows(places.take(order[lo:hi]))
    table = found.newest.table
    ok = pc.and_(table[OK_COLUMN], pc.invert(pc.is_in(table[ID], value_set=found.flagged[ID].combine_chunks())))
    picked = np.flatnonzero(ok.to_numpy(zero_copy_only=False))  # by id: newest.table is sorted by id
    if choice.only != "all":  # a stable sample: the same rows every time, spread over the whole output
        picked = np.array([p for *_, p in heapq.nsmallest(choice.sample_ok, _digests(table[ID], picked))], np.int64)
    return _rows(table.take(picked[lo:hi]))


def _error_places(found: Survey) -> pa.Table:
    """(id, file, row, SORT_KEY) of every error row: the newest error records (their id the key), error rows
    without an id (key ""), and the manifest's rejected rows (file MANIFEST_FILE, key the id they gave)."""
    table = found.newest.table
    keyed = table.select([ID, FILE, ROW]).filter(pc.invert(table[OK_COLUMN]))
    loose = [("", file, row) for file, row, _ in found.newest.unkeyed]
    loose += [(str(r.get("id") or ""), MANIFEST_FILE, k) for k, r in enumerate(found.manifest_errors)]
    keys, files, rows = zip(*loose, strict=True) if loose else ((), (), ())
    others = [
        pa.nulls(len(loose), pa.string()),
        pa.array(files, pa.int32()),
        pa.array(rows, pa.int64()),
        pa.array(keys, pa.string()),
    ]
    keyed = keyed.append_column(SORT_KEY, keyed[ID])
    return pa.concat_tables([keyed, pa.Table.from_arrays(others, schema=keyed.schema)])


def _digests(ids: pa.ChunkedArray, picked: np.ndarray) -> Iterator[tuple[str, str, int]]:
    """(digest, id, position) of the ids at these positions, DIGEST_BATCH Python strings at a time."""
    for start in range(0, len(picked), DIGEST_BATCH):
        positions = picked[start : start + DIGEST_BATCH]
        for position, row_id in zip(positions.tolist(), ids.take(positions).to_pylist(), strict=True):
            yield _digest(row_id), row_id, position


def _rows(places: pa.Table) -> list[tuple]:
    """(file, row, id, failed chunks) of these few rows (failed: 0 where places has no FAILED column)."""
    failed = places[FAILED].to_pylist() if FAILED in places.column_names else [0] * places.num_rows
    return list(zip(places[FILE].to_pylist(), places[ROW].to_pylist(), places[ID].to_pylist(), failed, strict=True))


def _digest(row_id: str) -> str:
    return hashlib.sha256(row_id.encode()).hexdigest()[:SAMPLE_DIGEST_CHARS]


def _read(store: Store, found: Survey, places: list[tuple[int, int]]) -> dict:
    """(file, row) -> the full record there, reading only the files that hold one of them."""
    by_file: dict[int, list[int]] = defaultdict(list)
    for file, row in places:
        by_file[file].append(row)
    out = {(MANIFEST_FILE, k): found.manifest_errors[k] for k in by_file.pop(MANIFEST_FILE, [])}
    for file, rows in by_file.items():
        wanted = np.unique(rows)
        got = (r for b in picked_batches(store, found.newest.files[file], wanted) for r in _pylist(b))
        out.update(((file, row), record) for row, record in zip(wanted.tolist(), got, strict=True))
    return out


def _pylist(batch) -> list[dict]:
    return batch.to_pylist(maps_as_pydicts="lossy")  # maps as dicts, as output.read.scan gives them
