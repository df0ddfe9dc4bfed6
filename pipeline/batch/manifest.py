"""Manifest: find the Parquet files, check the schema, find bad ids, validate rows, name audio files safely."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ID, TEXT = "id", "text"  # canonical names inside the pipeline, whatever the manifest calls them
# Optional per-row overrides and the Arrow type families they accept.
OPTIONAL_COLUMNS = {
    "voice": "string",
    "seed": "number",  # pandas writes an int column with gaps as float64; rows check integrality
    "text_temp": "number",
    "waveform_temp": "number",
    "max_duration": "number",
    "language": "string",
}
MAX_ID_CHARS = 512  # longer ids are almost surely a wrong column; file names would be cut anyway
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ManifestInfo:
    """What the driver knows about a manifest before reading its rows."""

    fs: Any
    files: list[str]
    schema: Any  # pyarrow.Schema as stored (original column names)
    num_rows: int
    id_column: str = ID
    text_column: str = TEXT
    optional: list[str] = field(default_factory=list)  # OPTIONAL_COLUMNS present
    carried: list[str] = field(default_factory=list)  # every other column, copied to metadata


def find_files(url: str, storage_options: dict | None = None):
    """(fs, sorted .parquet files) for a file, folder or glob; FileNotFoundError names the path."""
    from pipeline.storage import open_fs, redact_url, retry

    fs, path = open_fs(url, storage_options)
    try:
        if any(ch in path for ch in "*?["):
            files = retry(fs.glob, path)
        elif retry(fs.isdir, path):
            files = [p for p in retry(fs.find, path) if not _hidden(p)]
        elif retry(fs.exists, path):
            files = [path]
        else:
            raise FileNotFoundError(
                f"input.path {redact_url(url)!r} does not exist (expected a Parquet file, folder or glob)"
            )
    except TypeError as exc:  # s3fs checks its options only when it first connects
        raise ValueError(f"input.storage_options are not accepted: {exc}") from None
    files = sorted(p for p in files if p.endswith(".parquet") or p == path)
    if not files:
        raise FileNotFoundError(f"input.path {redact_url(url)!r} holds no .parquet files")
    return fs, files


def _hidden(path: str) -> bool:
    # Spark/Ray write _SUCCESS and _metadata; editors and our own temp writes start with '.'.
    return any(part.startswith((".", "_")) for part in path.split("/")[-1:])


def inspect_manifest(url: str, storage_options: dict | None = None, id_column: str = ID, text_column: str = TEXT):
    """Open the manifest, check its columns and types, count its rows; ValueError names what to fix."""
    import pyarrow.dataset as pads

    fs, files = find_files(url, storage_options)
    try:
        dataset = pads.dataset(files, filesystem=fs, format="parquet")
        schema = dataset.schema
        num_rows = dataset.count_rows()
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses for non-Parquet input
        raise ValueError(f"input.path: cannot read {files[0]!r} as Parquet ({type(exc).__name__}: {exc})") from None
    check_schema(schema, id_column, text_column)
    names = schema.names
    optional = [c for c in OPTIONAL_COLUMNS if c in names]
    carried = [c for c in names if c not in (id_column, text_column, *optional)]
    return ManifestInfo(fs, files, schema, num_rows, id_column, text_column, optional, carried)


def check_schema(schema, id_column: str = ID, text_column: str = TEXT) -> None:
    """Required columns present and typed as strings; optional columns of the right type family."""
    names = schema.names
    for role, name in (("input.id_column", id_column), ("input.text_column", text_column)):
        if name not in names:
            raise ValueError(f"manifest has no column {name!r} ({role}); columns are: {', '.join(names)}")
        if _family(schema.field(name).type) != "string":
            raise ValueError(f"manifest column {name!r} must be string, got {schema.field(name).type}")
    for canonical, name in ((ID, id_column), (TEXT, text_column)):
        if canonical != name and canonical in names:
            raise ValueError(
                f"manifest has both {name!r} and {canonical!r}; rename {canonical!r} or set it as the column name"
            )
    for name, family in OPTIONAL_COLUMNS.items():
        if name in names:
            got = _family(schema.field(name).type)
            ok = got in (family, "null") or (family == "number" and got == "integer")
            if not ok:
                raise ValueError(f"manifest column {name!r} must be {family}, got {schema.field(name).type}")


def _family(arrow_type) -> str:
    import pyarrow.types as pat

    if pat.is_dictionary(arrow_type):
        return _family(arrow_type.value_type)
    if pat.is_string(arrow_type) or pat.is_large_string(arrow_type):
        return "string"
    if pat.is_integer(arrow_type):
        return "integer"
    if pat.is_floating(arrow_type):
        return "number"
    if pat.is_null(arrow_type):
        return "null"
    return str(arrow_type)


def read_ids(info: ManifestInfo) -> list:
    """Every id in manifest order (only that column is read)."""
    import pyarrow.dataset as pads

    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet")
    return dataset.to_table(columns=[info.id_column]).column(0).to_pylist()


def id_problems(ids: list) -> tuple[set[str], list[dict]]:
    """Manifest-level errors: (ids to exclude from the run, one error record per affected input row).

    A duplicated id is ambiguous (which text is meant?), so every occurrence becomes an error row.
    """
    counts = Counter(ids)
    excluded: set[str] = set()
    errors: list[dict] = []
    for value, n in counts.items():
        problem = id_problem(value)
        if problem is None and n > 1:
            problem = f"id {value!r} appears {n} times in the manifest; ids must be unique: rename or drop the copies"
        if problem is None:
            continue
        if isinstance(value, str):
            excluded.add(value)
        errors.extend({"id": value, "stage": "manifest", "error": problem} for _ in range(n))
    return excluded, errors


def id_problem(value: Any) -> str | None:
    if value is None:
        return "id is missing (null); give every row a unique string id"
    if not isinstance(value, str) or not value.strip():
        return "id is empty; give every row a unique string id"
    if len(value) > MAX_ID_CHARS:
        return f"id is {len(value)} characters long (limit {MAX_ID_CHARS}); is input.id_column the right column?"
    if any(ord(ch) < 32 for ch in value):
        return f"id {value!r} contains control characters; use printable ids"
    return None


def safe_name(row_id: str) -> str:
    """File-name stem for an id: the id itself when harmless, else a slug plus a hash (no '/', no '..').

    The hash keeps distinct ids distinct after slugging ("a/b" and "a_b" must not share a file).
    """
    if _SAFE_ID.match(row_id) and ".." not in row_id:
        return row_id
    slug = _UNSAFE_CHARS.sub("_", row_id).strip("._-")[:64] or "id"
    digest = hashlib.sha256(row_id.encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def row_problem(row: dict) -> str | None:
    """Why a row (canonical names) cannot be synthesized, as a sentence a user can act on; None if fine."""
    text = row.get(TEXT)
    if text is None:
        return "text is missing (null); fill the text column or drop the row"
    if not isinstance(text, str) or not text.strip():
        return "text is empty; fill the text column or drop the row"
    seed = clean(row.get("seed"))
    if seed is not None and (seed < 0 or seed != int(seed) or seed >= 2**63):
        return f"seed {seed!r} is invalid; use an integer >= 0 or leave it empty"
    for name in ("text_temp", "waveform_temp"):
        value = row.get(name)
        if value is not None and not _is_nan(value) and not (0 <= value < math.inf):
            return f"{name} {value!r} is invalid; use a number >= 0 or leave it empty"
    value = row.get("max_duration")
    if value is not None and not _is_nan(value) and not (0 < value < math.inf):
        return f"max_duration {value!r} is invalid; use seconds > 0 or leave it empty"
    return None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def clean(value: Any) -> Any:
    """None for null and NaN (pandas turns missing numbers into NaN), else the value."""
    return None if value is None or _is_nan(value) else value
