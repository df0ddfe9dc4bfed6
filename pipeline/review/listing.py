"""Which rows a review page lists: flagged first, then errors, then ok rows if asked; capped per page.

Only the rows of the page asked for are kept while the candidates stream past (a heap of page x
max_rows keys), and only their records are read in full: a page costs its own rows, whatever the
output's size.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from pipeline.output.read import picked_batches
from pipeline.review import MAX_ROWS
from pipeline.review.survey import Survey
from pipeline.storage import Store

FLAGGED, ERRORS, OK = 0, 1, 2  # the listing's sections, in page order
# --only's choices and the sections each lists; none given: flagged and error rows (+ --sample-ok's).
ONLY = {"flagged": (FLAGGED,), "errors": (ERRORS,), "all": (FLAGGED, ERRORS, OK)}
SECTIONS = {FLAGGED: "Flagged rows", ERRORS: "Error rows", OK: "Other rows"}
LISTED = {FLAGGED: "flagged", ERRORS: "errors", OK: "ok"}  # the sections as the page's header names them
SAMPLE_DIGEST_CHARS = 16  # a stable pseudo-random order of ok rows, for --sample-ok
MANIFEST_FILE = -1  # the "file" of a manifest's rejected row: it is read from Survey.manifest_errors


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
    """The page's rows: the candidates' keys stream through a bounded heap, then only the winners are read."""
    totals = _totals(found, choice)
    listing = Listing(choice, totals, [])
    if choice.page > listing.pages:
        raise ValueError(
            f"--page {choice.page} is past the last page: {listing.total} row(s) listed, "
            f"{choice.max_rows} a page, {listing.pages} page(s)"
        )
    top = heapq.nsmallest(choice.page * choice.max_rows, _keys(found, choice))
    keys = top[listing.first :]
    records = _read(store, found, [(file, row) for _, _, file, row, _ in keys])
    for section, order, file, row, row_id in keys:
        failed = -order[0] if section == FLAGGED else 0
        record = records[(file, row)]
        listing.rows.append(Shown(section, str(record.get("id") if row_id is None else row_id), record, failed))
    return listing


def _totals(found: Survey, choice: Choice) -> dict:
    ok = found.stats.finished - len(found.failed)
    counts = {FLAGGED: len(found.failed), ERRORS: found.stats.errors, OK: ok}
    if choice.only is None and choice.sample_ok:
        counts[OK] = min(ok, choice.sample_ok)
    return {s: counts[s] for s in choice.sections}


def _keys(found: Survey, choice: Choice) -> Iterator[tuple]:
    """(section, order, file, row, id) of every listed row, unsorted: order sorts within a section, and
    (file, row) is unique, so ids (None for a row without one) are never compared."""
    records = found.newest.records
    if FLAGGED in choice.sections:  # most failed chunks first
        for row_id, failed in found.failed.items():
            yield FLAGGED, (-failed, row_id), records[row_id].file, records[row_id].row, row_id
    if ERRORS in choice.sections:
        for row_id, record in records.items():
            if not record.ok:
                yield ERRORS, (row_id,), record.file, record.row, row_id
        for file, row, _ in found.newest.unkeyed:
            yield ERRORS, ("",), file, row, None
        for k, rejected in enumerate(found.manifest_errors):
            yield ERRORS, (str(rejected.get("id") or ""),), MANIFEST_FILE, k, None
    if OK in choice.sections:
        ok = ((r, rec) for r, rec in records.items() if rec.ok and r not in found.failed)
        if choice.only == "all":
            yield from ((OK, (r,), rec.file, rec.row, r) for r, rec in ok)
        else:  # a stable sample: the same rows every time, spread over the whole output
            yield from heapq.nsmallest(choice.sample_ok, ((OK, (_digest(r), r), rec.file, rec.row, r) for r, rec in ok))


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
