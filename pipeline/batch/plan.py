"""Resume planning: per-row content hashes, which manifest ids a run (re)does and why, --redo, next revisions.

A committed row is left alone unless its content changed since (its row_hash differs from the
manifest row's), the user asked for it (--retry-errors, --redo), or it never finished. A row
written again gets revision latest + 1 (output/read.py says how the newest record wins).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.dataset as pads

from pipeline.config import content_hash
from pipeline.manifest.columns import ID, TEXT
from pipeline.manifest.rows import RowValues, parse_row, table_rows
from pipeline.output.read import Latest
from pipeline.text.segment import DEFAULT_MAX_TEXT_CHARS

REDO_FLAGGED: Literal["flagged"] = "flagged"  # `--redo flagged`: redo every ok row the quality gates flagged
HASH_BATCH_ROWS = 65_536  # manifest rows hashed per batch read
Redo = set[str] | Literal["flagged"] | None


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


def hash_manifest(info, cfg, batch_rows: int = HASH_BATCH_ROWS) -> dict[str, str]:
    """id -> raw_row_hash for every row with a string id (read in batches; ids as read_ids gives them).

    info is a manifest.ManifestInfo; only the id, text and optional setting columns are read.
    """
    settings = content_hash(cfg)
    limit = cfg.segment.max_text_chars
    columns = [info.id_column, info.text_column, *info.optional]
    names = [ID, TEXT, *info.optional]  # the names parse_row reads
    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet", schema=info.schema)
    out: dict[str, str] = {}
    for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
        table = pa.Table.from_batches([batch]).rename_columns(names)
        for raw in table_rows(table):
            if isinstance(raw[ID], str):
                out[raw[ID]] = raw_row_hash(raw, settings, limit)
    return out


def _sha256(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class ResumePlan:
    """Which manifest ids a resumed run leaves alone and which it (re)does, and why."""

    skip: set = field(default_factory=set)  # committed and left alone (ok, kept errors, unknown hash)
    new: set = field(default_factory=set)  # never committed
    redo_changed: set = field(default_factory=set)  # committed, but the row's content changed since
    retry: set = field(default_factory=set)  # error rows retried (--retry-errors)
    redo_chosen: set = field(default_factory=set)  # ok rows the user chose (--redo)
    done: int = 0  # ok rows kept
    kept_errors: int = 0  # error rows kept (no --retry-errors)
    unknown: int = 0  # kept rows written before row hashes existed (cannot tell if they changed)

    @property
    def redo(self) -> set:
        """Committed ids written again this run (they get revision latest + 1)."""
        return self.redo_changed | self.retry | self.redo_chosen

    @property
    def todo(self) -> set:
        return self.new | self.redo

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


def plan_resume(
    manifest_hashes: dict,
    committed_ok: dict,
    committed_errors: dict,
    *,
    retry_errors: bool = False,
    redo: Redo = None,
    flagged_ids: Set[str] = frozenset(),
    error_hashes: dict | None = None,
) -> ResumePlan:
    """Sort every manifest id into skip / new / redo_changed / retry / redo_chosen (disjoint).

    committed_ok: id -> stored row_hash (None for older outputs); committed_errors: id -> stage;
    error_hashes: id -> stored row_hash of the error rows (a changed error row is redone even without
    --retry-errors: its input was probably fixed). redo: ids, "flagged" (= flagged_ids) or None.
    An id both ok and errored must not be passed (read_committed_latest keeps one per id).
    """
    chosen = _chosen(redo, flagged_ids, manifest_hashes)
    error_hashes = error_hashes or {}
    plan = ResumePlan()
    for row_id, current in manifest_hashes.items():
        if row_id in committed_ok:
            stored = committed_ok[row_id]
            if stored is not None and stored != current:
                plan.redo_changed.add(row_id)
            elif row_id in chosen:
                plan.redo_chosen.add(row_id)
            else:
                plan.skip.add(row_id)
                plan.done += 1
                plan.unknown += stored is None
        elif row_id in committed_errors:
            stored = error_hashes.get(row_id)
            if stored is not None and stored != current:
                plan.redo_changed.add(row_id)
            elif retry_errors or row_id in chosen:
                plan.retry.add(row_id)
            else:
                plan.skip.add(row_id)
                plan.kept_errors += 1
        else:
            plan.new.add(row_id)
    return plan


def _chosen(redo: Redo, flagged_ids: Set[str], manifest_hashes: dict) -> set:
    if redo is None:
        return set()
    if redo == REDO_FLAGGED:
        return set(flagged_ids)
    unknown = sorted(set(redo) - set(manifest_hashes))
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"--redo names {len(unknown)} id(s) that are not in the manifest: {shown}; "
            "check the ids (comma-separated, or a file with one id per line)"
        )
    return set(redo)


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


def next_revisions(latest: Latest, ids: set) -> dict[str, int]:
    """id -> the revision its next write gets (latest + 1); for the ids a run redoes."""
    return {i: latest.revisions[i] + 1 for i in ids if i in latest.revisions}
