"""Resume planning: per-row content hashes, which manifest ids a run (re)does and why, --redo, next revisions.

A committed row is left alone unless its content changed since (its row_hash differs from the
manifest row's), the user asked for it (--retry-errors, --redo), or it never finished. A row
written again gets revision latest + 1 (output/read.py says how the newest record wins).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.config import content_hash
from pipeline.manifest.columns import ID, TEXT
from pipeline.manifest.rows import RowValues, parse_row, table_rows
from pipeline.output.read import FLAGGED, OK, REVISION, ROW_HASH, Latest
from pipeline.text.segment import DEFAULT_MAX_TEXT_CHARS

REDO_FLAGGED: Literal["flagged"] = "flagged"  # `--redo flagged`: redo every ok row the quality gates flagged
HASH_BATCH_ROWS = 65_536  # manifest rows hashed per batch read
Redo = set[str] | Literal["flagged"] | None
MANIFEST_HASHES = pa.schema([(ID, pa.string()), (ROW_HASH, pa.string())])


def _no_ids() -> pa.Array:
    return pa.array([], pa.string())


def row_hash(values: RowValues, cfg) -> str:
    """sha256 of what shapes one row's audio: its parsed values plus content_hash(cfg).

    cfg is a RunConfig, or its content_hash string when hashing many rows (computed once).
    json with sorted keys and repr-exact floats: the same on every machine and Python version.
    The id is left out (it is the key); a voice is hashed by its spec, not its file's bytes.
    """
    settings = cfg if isinstance(cfg, str) else content_hash(cfg)
    shaping = {
        "text": values.text,
        "voice": values.voice,
        "seed": values.seed,
        "language": values.language,
        "text_temp": values.text_temp,
        "waveform_temp": values.waveform_temp,
        "max_duration": values.max_duration,
        "settings": settings,
    }
    # Newer columns join the hash only when a row sets them, so rows written before them keep their hash.
    shaping |= {k: v for k, v in (("text_format", values.text_format), ("lexicon", values.lexicon)) if v is not None}
    return _sha256(shaping)


def raw_row_hash(raw: dict, cfg, max_text_chars: int | None = None) -> str:
    """row_hash of a raw manifest row; a row that does not parse is hashed by its raw values.

    So fixing a bad row's input (the usual reason it errored) changes its hash and gets it redone.
    """
    settings = cfg if isinstance(cfg, str) else content_hash(cfg)
    values, _ = parse_row(raw, max_text_chars or DEFAULT_MAX_TEXT_CHARS)
    if values is not None:
        return row_hash(values, settings)
    # repr is exact and stable for the types a manifest holds (str, bytes, int, float, None).
    return _sha256({"raw": sorted((str(k), repr(v)) for k, v in raw.items() if k != "id"), "settings": settings})


def hash_manifest(info, cfg, batch_rows: int = HASH_BATCH_ROWS) -> pa.Table:
    """(id, row_hash): raw_row_hash of every row with a string id (read in batches; ids as read_ids gives them).

    info is a manifest.ManifestInfo; only the id, text and optional setting columns are read.
    """
    settings = content_hash(cfg)
    limit = cfg.segment.max_text_chars
    columns = [info.id_column, info.text_column, *info.optional]
    names = [ID, TEXT, *info.optional]  # the names parse_row reads
    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet", schema=info.schema)
    parts = [MANIFEST_HASHES.empty_table()]
    for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
        table = pa.Table.from_batches([batch]).rename_columns(names)
        rows = [raw for raw in table_rows(table) if isinstance(raw[ID], str)]
        hashes = [raw_row_hash(raw, settings, limit) for raw in rows]
        parts.append(pa.table([[raw[ID] for raw in rows], hashes], schema=MANIFEST_HASHES))
    return pa.concat_tables(parts)


def _sha256(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class ResumePlan:
    """Which manifest ids a resumed run leaves alone and which it (re)does, and why: disjoint id arrays,
    Arrow rather than sets, since at a million rows skip or new holds every id."""

    skip: pa.Array = field(default_factory=_no_ids)  # committed and left alone (ok, kept errors, unknown hash)
    new: pa.Array = field(default_factory=_no_ids)  # never committed
    redo_changed: pa.Array = field(default_factory=_no_ids)  # committed, but the row's content changed since
    retry: pa.Array = field(default_factory=_no_ids)  # error rows retried (--retry-errors)
    redo_chosen: pa.Array = field(default_factory=_no_ids)  # ok rows the user chose (--redo)
    done: int = 0  # ok rows kept
    kept_errors: int = 0  # error rows kept (no --retry-errors)
    unknown: int = 0  # kept rows written before row hashes existed (cannot tell if they changed)

    @property
    def redo(self) -> pa.Array:
        """Committed ids written again this run (they get revision latest + 1)."""
        return pa.concat_arrays([self.redo_changed, self.retry, self.redo_chosen])

    @property
    def todo(self) -> int:
        """Rows this run writes."""
        return len(self.new) + len(self.redo_changed) + len(self.retry) + len(self.redo_chosen)

    def describe(self) -> str:
        """One line for the run log."""
        parts = [f"{self.done} done"]
        if self.kept_errors:
            parts.append(f"{self.kept_errors} errors kept (--retry-errors retries them)")
        parts.append(f"{len(self.redo_changed)} changed since (redone)")
        parts.append(f"{len(self.retry)} errors retried")
        parts.append(f"{len(self.redo_chosen)} chosen")
        parts.append(f"{len(self.new)} new")
        if self.unknown:
            parts.append(f"{self.unknown} written before row hashes (kept, unchecked)")
        return "resuming: " + ", ".join(parts)


def plan_resume(manifest: pa.Table, committed: Latest, *, retry_errors: bool = False, redo: Redo = None) -> ResumePlan:
    """Sort every manifest id into skip / new / redo_changed / retry / redo_chosen (disjoint), in Arrow.

    manifest: (id, row_hash) of the rows to plan, ids distinct (hash_manifest's, or null hashes for an
    output with nothing committed). committed: the newest record per id; a stored row_hash that differs
    from the manifest row's means its content changed: redone, an error row too (its input was probably
    fixed), even without --retry-errors. redo: ids, "flagged" (the ok rows whose newest record is
    flagged) or None.
    """
    ids, current = manifest[ID].combine_chunks(), manifest[ROW_HASH].combine_chunks()
    newest = committed.newest.table
    at = pc.index_in(ids, value_set=newest[ID].combine_chunks())  # null: never committed
    found = pc.is_valid(at)
    stored = newest.select([OK, ROW_HASH]).take(at)
    ok = pc.fill_null(stored[OK], False).combine_chunks()
    failed = pc.and_(found, pc.invert(ok))
    changed = pc.fill_null(pc.not_equal(stored[ROW_HASH], current), False).combine_chunks()
    chosen = pc.is_in(ids, value_set=_chosen(redo, committed, ids))
    left = pc.invert(changed)
    keep_ok = pc.and_(pc.and_(ok, left), pc.invert(chosen))
    again = pc.or_(chosen, pa.scalar(retry_errors))
    keep_error = pc.and_(pc.and_(failed, left), pc.invert(again))
    return ResumePlan(
        skip=ids.filter(pc.or_(keep_ok, keep_error)),
        new=ids.filter(pc.invert(found)),
        redo_changed=ids.filter(pc.and_(found, changed)),
        retry=ids.filter(pc.and_(pc.and_(failed, left), again)),
        redo_chosen=ids.filter(pc.and_(pc.and_(ok, left), chosen)),
        done=_count(keep_ok),
        kept_errors=_count(keep_error),
        unknown=_count(pc.and_(keep_ok, pc.is_null(stored[ROW_HASH]).combine_chunks())),
    )


def _count(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _chosen(redo: Redo, committed: Latest, ids: pa.Array) -> pa.Array:
    """The ids --redo asks for; ids it names that the manifest lacks are one clear error."""
    if redo is None:
        return _no_ids()
    if redo == REDO_FLAGGED:
        ok = committed.ok_table()
        return ok.filter(ok[FLAGGED])[ID].combine_chunks()
    asked = pa.array(sorted(redo), pa.string())
    unknown = asked.filter(pc.invert(pc.is_in(asked, value_set=ids))).to_pylist()
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"--redo names {len(unknown)} id(s) that are not in the manifest: {shown}; "
            "check the ids (comma-separated, or a file with one id per line)"
        )
    return asked


def parse_redo(value: str | None) -> Redo:
    """--redo's value: "flagged", a file with one id per line (# comments), or comma-separated ids."""
    if value is None:
        return None
    value = value.strip()
    if value == REDO_FLAGGED:
        return REDO_FLAGGED
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            ids = {line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")}
        if not ids:
            raise ValueError(f"--redo file {value!r} holds no ids; put one id per line")
        return ids
    ids = {part.strip() for part in value.split(",") if part.strip()}
    if not ids:
        raise ValueError("--redo got no ids; pass comma-separated ids, a file of ids, or 'flagged'")
    return ids


def next_revisions(latest: Latest, ids: pa.Array) -> dict[str, int]:
    """id -> the revision its next write gets (latest + 1); for the ids a run redoes."""
    newest = latest.newest.table
    at = pc.index_in(ids, value_set=newest[ID].combine_chunks())
    revisions = newest[REVISION].take(at).to_pylist()
    return {i: r + 1 for i, r in zip(ids.to_pylist(), revisions, strict=True) if r is not None}
