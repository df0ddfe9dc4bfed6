"""Which rows an export takes: each finished id once (its newest record), flags, quality limits, splits."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipeline.output.layout import METADATA
from pipeline.output.read import committed_files, newest_rows, read_committed_latest
from pipeline.review.chunks import is_failed
from pipeline.storage import Store

DEFAULT_BATCH_ROWS = 1_000  # metadata rows held at once (no audio: the writers read audio per row)
DEFAULT_SPLITS = (("train", 1.0),)
SPLIT_TOLERANCE = 1e-6  # fractions must add up to 1 within this
HASH_SPACE = 2**64  # the id's sha256 prefix taken as a 64-bit integer, scaled to [0, 1)
# Measures --min-quality takes, with the side a chunk's value must stay on: "max" (value <= limit)
# or "min" (value >= limit). wer/cer come from quality.speech, speaker_similarity from quality.speaker.
QUALITY_BOUNDS = {
    "wer": "max",
    "cer": "max",
    "speaker_similarity": "min",
    "clipped_fraction": "max",
    "longest_silence_s": "max",
}
_SPLIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # what `datasets` accepts as a split name


@dataclass(frozen=True)
class QualityLimit:
    measure: str
    bound: str  # "max" or "min" (QUALITY_BOUNDS)
    value: float

    def holds(self, measured: float | None) -> bool:
        if measured is None or not math.isfinite(measured):
            return False  # a chunk the check never measured is not shown to be good
        return measured <= self.value if self.bound == "max" else measured >= self.value

    def describe(self) -> str:
        return f"{self.measure} {'<=' if self.bound == 'max' else '>='} {self.value:g}"


@dataclass(frozen=True)
class Selection:
    """What goes into an export, besides "every finished id once in its newest record"."""

    include_flagged: bool = False
    limits: tuple[QualityLimit, ...] = ()
    splits: tuple[tuple[str, float], ...] = DEFAULT_SPLITS

    def describe(self) -> dict:
        """For the export marker and the card: the choices, as plain values."""
        return {
            "include_flagged": self.include_flagged,
            "min_quality": [limit.describe() for limit in self.limits],
            "splits": {name: fraction for name, fraction in self.splits},
        }


@dataclass
class Counts:
    """What the reader saw: the finished ids, and why some were left out."""

    finished: int = 0  # ids whose newest record is a finished row
    error_rows: int = 0  # ids whose newest record is an error (never exported)
    flagged_left: int = 0  # finished but flagged, without --include-flagged
    quality_left: int = 0  # finished but a chunk misses a --min-quality limit
    missing_audio: list = field(default_factory=list)  # ids whose audio file is gone
    batches: int = 0  # metadata batches read
    largest_batch: int = 0  # rows in the largest of them (<= batch_rows)


def parse_splits(text: str | None) -> tuple[tuple[str, float], ...]:
    """`train=0.98,validation=0.01,test=0.01` -> ((name, fraction), ...); None -> one split `train`."""
    if text is None or not text.strip():
        return DEFAULT_SPLITS
    out: list[tuple[str, float]] = []
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if not sep or not _SPLIT_NAME.match(name):
            raise ValueError(
                f"--split {text!r}: write name=fraction pairs such as train=0.98,validation=0.01,test=0.01 "
                "(names: a letter, then letters, digits or _)"
            )
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"--split {text!r}: {value.strip()!r} is not a number") from None
        if not 0 < fraction <= 1:
            raise ValueError(f"--split {text!r}: {name}'s fraction must be in (0, 1], got {fraction:g}")
        if name in dict(out):
            raise ValueError(f"--split {text!r}: {name!r} is named twice")
        out.append((name, fraction))
    total = sum(f for _, f in out)
    if abs(total - 1.0) > SPLIT_TOLERANCE:
        raise ValueError(f"--split {text!r}: the fractions add up to {total:g}; they must add up to 1")
    return tuple(out)


def parse_quality(items: list[str] | None) -> tuple[QualityLimit, ...]:
    """`["wer=0.2", "speaker_similarity=0.75"]` -> limits; the side each bounds is QUALITY_BOUNDS'."""
    limits: list[QualityLimit] = []
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in QUALITY_BOUNDS:
            allowed = ", ".join(f"{k} ({'max' if b == 'max' else 'min'})" for k, b in QUALITY_BOUNDS.items())
            raise ValueError(f"--min-quality {item!r}: write MEASURE=VALUE with MEASURE one of {allowed}")
        try:
            limit = float(value)
        except ValueError:
            raise ValueError(f"--min-quality {item!r}: {value.strip()!r} is not a number") from None
        if not math.isfinite(limit):
            raise ValueError(f"--min-quality {item!r}: the limit must be a finite number")
        limits.append(QualityLimit(name, QUALITY_BOUNDS[name], limit))
    return tuple(limits)


def split_of(row_id: str, splits: tuple[tuple[str, float], ...]) -> str:
    """The split of an id: sha256 of the id -> u in [0, 1), cut at the cumulative fractions.

    Stable across runs and machines, and independent of which other ids exist."""
    u = int.from_bytes(hashlib.sha256(row_id.encode("utf-8", "surrogatepass")).digest()[:8], "big") / HASH_SPACE
    edge = 0.0
    for name, fraction in splits:
        edge += fraction
        if u < edge:
            return name
    return splits[-1][0]  # u just under 1 with fractions summing to 1 - epsilon


def is_flagged(row: dict) -> bool:
    """Flagged as `barkpipe report` shows it: the row's flag, or a chunk that failed its gates."""
    return bool(row.get("flagged")) or any(is_failed(c) for c in row.get("chunks") or [])


def chunk_measures(chunk: dict) -> dict:
    """A chunk's measures as a dict (Arrow maps arrive as [(key, value), ...])."""
    return dict(chunk.get("measures") or {})


def meets_limits(row: dict, limits: tuple[QualityLimit, ...]) -> bool:
    """Every chunk meets every limit; a row without chunks meets none."""
    chunks = row.get("chunks") or []
    if limits and not chunks:
        return False
    return all(limit.holds(chunk_measures(c).get(limit.measure)) for c in chunks for limit in limits)


def metadata_parts(store: Store) -> list[str]:
    """The committed metadata files, view and journal (their footers give the export's columns)."""
    return committed_files(store, METADATA)


def iter_rows(
    store: Store,
    selection: Selection,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    counts: Counts | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[tuple[str, dict]]:
    """(split, metadata row) for each exported id, once, in its newest record (output/read.py's rule),
    streamed `batch_rows` at a time in part order."""
    counts = counts if counts is not None else Counts()
    latest = read_committed_latest(store)
    counts.finished, counts.error_rows = latest.ok_count, latest.error_count

    def seen(rows: int) -> None:
        counts.batches += 1
        counts.largest_batch = max(counts.largest_batch, rows)
        if on_batch is not None:
            on_batch(rows)

    for row in newest_rows(store, METADATA, latest=latest, batch_rows=batch_rows, on_batch=seen):
        if not selection.include_flagged and is_flagged(row):
            counts.flagged_left += 1
        elif not meets_limits(row, selection.limits):
            counts.quality_left += 1
        else:
            yield split_of(row["id"], selection.splits), row
