"""Resume that knows what it did: per-row content hashes, the latest committed record per id, the redo plan.

How a redone row is replaced without being lost or doubled (parts stay create-only, never deleted):
a row's first write is revision 0; redoing it (content changed, --retry-errors, --redo) writes a
new metadata or errors row with revision = its latest revision + 1, in a new part (the part name's
digest covers `id@revision`) and with its own audio name. Until that part is committed the old
record is still the newest one, so a run that dies halfway loses nothing; once it is committed the
old record is superseded. `read_committed_latest` therefore keeps, per id, the record with the
highest revision: "every id exactly once" holds for that view while the old parts remain. Two
records of one id at the SAME revision are a real bug (two writers, a block written twice) and are
counted as duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Literal

from pipeline.manifest.rows import RowValues

METADATA, ERRORS = "metadata", "errors"  # the output folders sink.py commits parts into
# Columns the writer adds for resume (older outputs lack them: revision 0, hash unknown).
ROW_HASH, REVISION = "row_hash", "revision"
FLAGGED = "flagged"
REDO_FLAGGED: Literal["flagged"] = "flagged"  # `--redo flagged`: redo every ok row the quality gates flagged
DUPLICATE_SAMPLES = 20  # ids named in the duplicates list; the count covers them all
Redo = set[str] | Literal["flagged"] | None


def row_hash(values: RowValues, cfg) -> str:
    """sha256 of what shapes one row's audio: its parsed values plus content_hash(cfg).

    cfg is a RunConfig, or its content_hash string when hashing many rows (computed once).
    json with sorted keys and repr-exact floats: the same on every machine and Python version.
    The id is left out (it is the key); a voice is hashed by its spec, not its file's bytes.
    """
    from pipeline.config import content_hash

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
    from pipeline.config import content_hash
    from pipeline.manifest.rows import DEFAULT_MAX_TEXT_CHARS, parse_row

    settings = cfg if isinstance(cfg, str) else content_hash(cfg)
    values, _ = parse_row(raw, max_text_chars or DEFAULT_MAX_TEXT_CHARS)
    if values is not None:
        return row_hash(values, settings)
    # repr is exact and stable for the types a manifest holds (str, bytes, int, float, None).
    return _sha256({"raw": sorted((str(k), repr(v)) for k, v in raw.items() if k != "id"), "settings": settings})


def hash_manifest(info, cfg, batch_rows: int = 65_536) -> dict[str, str]:
    """id -> raw_row_hash for every row with a string id (read in batches; ids as read_ids gives them).

    info is a manifest.ManifestInfo; only the id, text and optional setting columns are read.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    from pipeline.config import content_hash
    from pipeline.manifest.read import ID, TEXT
    from pipeline.manifest.rows import table_rows

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


def audio_name(safe_name: str, audio_format: str, revision: int = 0) -> str:
    """A row's file name under audio/; a redo writes beside the old file, never over it.

    Revision r > 0 goes in a folder `r<r>/`: a safe name never holds "/", so no id at revision 0
    can spell it (a suffix like ".r1" could: "a.r1" is a safe id).
    """
    return f"{safe_name}.{audio_format}" if revision == 0 else f"r{revision}/{safe_name}.{audio_format}"


def part_keys(ids: list[str], revisions: list[int]) -> list[str]:
    """What sink.part_name digests: the ids, with "@revision" for redone rows (revision-0 names stay as they were).

    A block retried by Ray finds its own part; a redo of the same ids gets a new part.
    """
    return [i if r == 0 else f"{i}@{r}" for i, r in zip(ids, revisions, strict=True)]


@dataclass
class Latest:
    """The newest committed record per id (the shape of sink.Committed, plus what resume needs)."""

    ok: dict = field(default_factory=dict)  # id -> duration_s
    errors: list = field(default_factory=list)  # (id, stage); ids later fixed by an ok row are gone
    duplicate_ok: int = 0  # extra records of an id at its latest revision (should stay 0)
    duplicate_ids: list = field(default_factory=list)  # the first DUPLICATE_SAMPLES of those ids
    superseded: int = 0  # older records ignored
    hashes: dict = field(default_factory=dict)  # id -> stored row_hash of its latest record (None: older output)
    revisions: dict = field(default_factory=dict)  # id -> latest revision
    flagged: set = field(default_factory=set)  # ok ids whose latest record is flagged

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
class _Record:
    revision: int
    ok: bool
    value: object  # duration_s (ok) or stage (error)
    row_hash: str | None
    flagged: bool


def read_committed_latest(store) -> Latest:
    """Every committed metadata/errors part, reduced to the newest record per id."""
    records: dict[str, list[_Record]] = {}
    unkeyed: list = []  # error rows without an id: kept as they are
    for path in store.glob(f"{METADATA}/part-*.parquet"):
        for row in _read_part(store, path, ["id", "duration_s", ROW_HASH, REVISION, FLAGGED]):
            records.setdefault(row["id"], []).append(
                _Record(row.get(REVISION) or 0, True, row["duration_s"], row.get(ROW_HASH), bool(row.get(FLAGGED)))
            )
    for path in store.glob(f"{ERRORS}/part-*.parquet"):
        for row in _read_part(store, path, ["id", "stage", ROW_HASH, REVISION]):
            if row["id"] is None:
                unkeyed.append((None, row["stage"]))
                continue
            records.setdefault(row["id"], []).append(
                _Record(row.get(REVISION) or 0, False, row["stage"], row.get(ROW_HASH), False)
            )
    out = Latest()
    for row_id, found in records.items():
        top = max(r.revision for r in found)
        newest = [r for r in found if r.revision == top]
        out.superseded += len(found) - len(newest)
        if len(newest) > 1:
            out.duplicate_ok += len(newest) - 1
            if len(out.duplicate_ids) < DUPLICATE_SAMPLES:
                out.duplicate_ids.append(row_id)
        # An ok record beats an error of the same revision (what older outputs meant); still a duplicate.
        pick = next((r for r in newest if r.ok), newest[0])
        out.revisions[row_id] = top
        out.hashes[row_id] = pick.row_hash
        if pick.ok:
            out.ok[row_id] = pick.value
            if pick.flagged:
                out.flagged.add(row_id)
        else:
            out.errors.append((row_id, pick.value))
    out.errors.extend(unkeyed)
    return out


def _read_part(store, path: str, wanted: list[str]) -> list[dict]:
    """The wanted columns a part has (older parts lack the resume columns), as rows."""
    import pyarrow.parquet as pq

    from pipeline.storage import DEFAULT_RETRY_S, retry

    def read():
        with store.fs.open(path, "rb") as f:
            part = pq.ParquetFile(f)
            columns = [c for c in wanted if c in part.schema_arrow.names]
            return part.read(columns=columns).to_pylist()

    return retry(read, budget_s=getattr(store, "retry_s", DEFAULT_RETRY_S), what=path)


def newest_records(metadata: list[dict], errors: Sequence[dict] = ()) -> tuple[list[dict], list[dict]]:
    """Metadata and error rows reduced to each id's newest record, as read_committed_latest counts
    them (highest revision; an ok record beats an error of the same revision). Error rows without
    an id are kept as they are. Returns (ok rows, error rows) in their original order."""
    best: dict = {}
    for n, (ok, record) in enumerate([(True, r) for r in metadata] + [(False, e) for e in errors]):
        row_id = record.get("id")
        if row_id is None:
            continue
        rank = (record.get(REVISION) or 0, ok)
        if row_id not in best or rank > best[row_id][0]:
            best[row_id] = (rank, n)
    keep = {n for _, n in best.values()}
    ok_rows = [r for n, r in enumerate(metadata) if n in keep]
    error_rows = [e for n, e in enumerate(errors, len(metadata)) if n in keep or e.get("id") is None]
    return ok_rows, error_rows
