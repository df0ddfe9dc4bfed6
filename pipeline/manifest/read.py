"""Reading a manifest: find its Parquet files, unify and check their schema, count rows, read the ids."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pyarrow.types as pat

from pipeline.manifest.columns import ID, OPTIONAL_COLUMNS, TEXT
from pipeline.manifest.rows import table_rows
from pipeline.storage import is_transient, open_fs, redact_url, retry

FOOTER_THREADS = 8  # parallel footer reads in inspect_manifest (each is one ranged GET on S3)


@dataclass
class ManifestInfo:
    """What the driver knows about a manifest before reading its rows."""

    fs: Any
    files: list[str]
    schema: Any  # pyarrow.Schema unified over every part (original names): read_parquet(..., schema=schema)
    num_rows: int
    id_column: str = ID
    text_column: str = TEXT
    optional: list[str] = field(default_factory=list)  # OPTIONAL_COLUMNS present
    carried: list[str] = field(default_factory=list)  # every other column, copied to metadata


def find_files(url: str, storage_options: dict | None = None):
    """(fs, sorted .parquet files) for a file, folder or glob; FileNotFoundError names the path."""
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
        raise ValueError(redact_url(f"input.storage_options are not accepted: {exc}")) from None
    files = sorted(p for p in files if p.endswith(".parquet") or p == path)
    if not files:
        raise FileNotFoundError(f"input.path {redact_url(url)!r} holds no .parquet files")
    return fs, files


def _hidden(path: str) -> bool:
    # Spark/Ray write _SUCCESS and _metadata; editors and our own temp writes start with '.'.
    return any(part.startswith((".", "_")) for part in path.split("/")[-1:])


def inspect_manifest(url: str, storage_options: dict | None = None, id_column: str = ID, text_column: str = TEXT):
    """Open the manifest, check every part's columns and types, count its rows; ValueError names what to fix."""
    fs, files = find_files(url, storage_options)
    footers = read_footers(fs, files)
    schema = unify_schemas(
        [(f, m.schema.to_arrow_schema()) for f, m in zip(files, footers, strict=True)],
        required=(id_column, text_column),
    )
    schema = ids_as_text(schema, id_column)
    check_schema(schema, id_column, text_column)
    names = schema.names
    optional = [c for c in OPTIONAL_COLUMNS if c in names]
    carried = [c for c in names if c not in (id_column, text_column, *optional)]
    num_rows = sum(m.num_rows for m in footers)
    return ManifestInfo(fs, files, schema, num_rows, id_column, text_column, optional, carried)


def read_footers(fs, files: list[str]) -> list:
    """Each file's Parquet footer (schema and row count; one small ranged read each, in parallel)."""

    def footer(path: str):
        try:
            with fs.open(path, "rb") as f:
                return pq.read_metadata(f)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses for non-Parquet input
            if is_transient(exc):
                raise  # retried below; only a file that is not Parquet is the user's to fix
            problem = f"input.path: cannot read {path!r} as Parquet ({type(exc).__name__}: {exc})"
            raise ValueError(redact_url(problem)) from None

    with ThreadPoolExecutor(max_workers=min(FOOTER_THREADS, len(files))) as pool:
        return list(pool.map(lambda p: retry(footer, p), files))


def unify_schemas(parts: list[tuple[str, Any]], required: tuple[str, ...] = (ID, TEXT)):
    """One schema for all parts: int32+int64 -> int64, int+float -> float64, string+large_string ->
    large_string, null + anything -> that. Any other disagreement is one line naming both files."""
    seen: dict[str, tuple[Any, str]] = {}  # column -> (unified type, first file that had it)
    order: list[str] = []
    for path, schema in parts:
        for f in schema:
            if f.name not in seen:
                seen[f.name] = (f.type, path)
                order.append(f.name)
                continue
            known, first = seen[f.name]
            merged = _unify_types(known, f.type)
            if merged is None:
                raise ValueError(
                    redact_url(
                        f"manifest column {f.name!r} is {known} in {first!r} but {f.type} in "
                        f"{path!r}; write every part with the same column types"
                    )
                )
            seen[f.name] = (merged, first)
    for name in required:
        if name in seen and any(name not in schema.names for _, schema in parts):
            missing = next(p for p, schema in parts if name not in schema.names)
            problem = f"manifest column {name!r} is in {seen[name][1]!r} but missing from {missing!r}"
            raise ValueError(redact_url(problem))
    return pa.schema([pa.field(name, seen[name][0]) for name in order])


def _unify_types(a, b):
    """The type both a and b convert to without loss of meaning, or None."""
    a = a.value_type if pat.is_dictionary(a) else a
    b = b.value_type if pat.is_dictionary(b) else b
    if a.equals(b) or pat.is_null(b):
        return a
    if pat.is_null(a):
        return b
    if pat.is_integer(a) and pat.is_integer(b):
        return pa.uint64() if pat.is_unsigned_integer(a) and pat.is_unsigned_integer(b) else pa.int64()
    if (pat.is_integer(a) or pat.is_floating(a)) and (pat.is_integer(b) or pat.is_floating(b)):
        return pa.float64()
    for small, large in ((pat.is_string, pat.is_large_string), (pat.is_binary, pat.is_large_binary)):
        if (small(a) or large(a)) and (small(b) or large(b)):
            return a if large(a) else b
    return None


def ids_as_text(schema, id_column: str = ID):
    """The schema with an integer id column read as text: id 42 is "42" in metadata, file names and resume.

    pyarrow casts the column while reading with this schema, so every reader that passes
    ManifestInfo.schema (read_ids, resume, the run's read tasks) sees the same strings.
    """
    if id_column in schema.names and _family(schema.field(id_column).type) == "integer":
        return schema.set(schema.get_field_index(id_column), pa.field(id_column, pa.string()))
    return schema


def check_schema(schema, id_column: str = ID, text_column: str = TEXT) -> None:
    """Required columns present and typed as strings; optional columns of the right type family."""
    names = schema.names
    for role, name in (("input.id_column", id_column), ("input.text_column", text_column)):
        if name not in names:
            raise ValueError(f"manifest has no column {name!r} ({role}); columns are: {', '.join(names)}")
        family = _family(schema.field(name).type)
        if role == "input.id_column" and family == "number":
            raise ValueError(
                f"manifest column {name!r} holds floating-point ids ({schema.field(name).type}), which do not name "
                f"rows exactly; write them as text, e.g. df[{name!r}] = df[{name!r}].astype('int64').astype(str)"
            )
        if family not in ("string", "binary"):  # binary: UTF-8 checked per row
            kind = "string or integer" if role == "input.id_column" else "string"
            raise ValueError(f"manifest column {name!r} must be {kind}, got {schema.field(name).type}")
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
    if pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type):
        return "binary"
    return str(arrow_type)


def read_ids(info: ManifestInfo) -> list:
    """Every id in manifest order (only that column is read); invalid UTF-8 comes back as Undecodable."""
    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet", schema=info.schema)
    table = dataset.to_table(columns=[info.id_column])
    return [row[info.id_column] for row in table_rows(table)]
