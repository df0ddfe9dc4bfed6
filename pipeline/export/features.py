"""The exported columns: their Arrow types, the `datasets` features JSON and Hub YAML, and each row's record."""

from __future__ import annotations

import base64
import json
import math
import posixpath
from dataclasses import dataclass

import pyarrow as pa

from pipeline.export.rows import is_flagged
from pipeline.output.schema import AUDIO, owned_names

# Bark's EnCodec rate (bark_model.constants.SAMPLE_RATE, not imported here: bark_model pulls in torch).
# The declared rate `datasets` decodes to; files at another rate are resampled by its decoder.
SAMPLE_RATE = 24_000
# Chunk measures that become named per-chunk columns (null where a check did not run).
CHUNK_MEASURES = (
    "wer",
    "cer",
    "speaker_similarity",
    "duration_ratio",
    "rms_db",
    "longest_silence_s",
    "clipped_fraction",
)
# The exported audio keeps the run's audio column name: a carried manifest column of that name is
# already renamed (schema.carried_name), so it cannot clash.
CHUNKS = "chunks"
# Row-level metadata columns every export carries as they are (audio and chunks are rebuilt).
SCALARS = (
    "id",
    "text",
    "duration_s",
    "sample_rate",
    "language",
    "voice",
    "seed",
    "flagged",
    "revision",
    "model",
    "config_hash",
)
# Arrow types that are a `datasets` Value as they are, by the dtype name it gives them.
_VALUE_NAMES = {
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "halffloat": "float16",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "large_string": "large_string",
    "binary": "binary",
    "large_binary": "large_binary",
    "date32[day]": "date32",
    "null": "null",
}


def value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def listed(feature: dict) -> dict:
    return {"feature": feature, "_type": "List"}  # datasets >= 4 writes lists so


def audio_feature() -> dict:
    return {"sampling_rate": SAMPLE_RATE, "_type": "Audio"}  # decode=True is the default and left out


def _fixed():
    """(name, Arrow type, feature) of the columns every export has, in order."""
    chunk = [
        ("index", pa.int32()),
        ("text", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("seed", pa.int64()),
        ("attempts", pa.int32()),
        ("passed", pa.bool_()),
        ("failed", pa.list_(pa.string())),
        ("voice", pa.string()),
        ("transcript", pa.string()),
        *((m, pa.float64()) for m in CHUNK_MEASURES),
    ]
    chunk_type = pa.struct(chunk)
    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    types = {"duration_s": pa.float64(), "sample_rate": pa.int32(), "seed": pa.int64(), "flagged": pa.bool_(),
             "revision": pa.int32()}  # fmt: skip
    scalars = [(n, types.get(n, pa.string())) for n in SCALARS]
    out = [(n, t, feature_of(t)) for n, t in scalars[:1]]
    out.append((AUDIO, audio_type, audio_feature()))
    out += [(n, t, feature_of(t)) for n, t in scalars[1:]]
    out.append((CHUNKS, pa.list_(chunk_type), feature_of(pa.list_(chunk_type))))
    return out


def feature_of(arrow_type) -> dict | None:
    """The `datasets` feature JSON of an Arrow type, or None where this export writes it as JSON text."""
    if pa.types.is_timestamp(arrow_type):
        return value(f"timestamp[{arrow_type.unit}" + (f", tz={arrow_type.tz}]" if arrow_type.tz else "]"))
    if pa.types.is_list(arrow_type):
        inner = feature_of(arrow_type.value_type)
        return None if inner is None else listed(inner)
    if pa.types.is_struct(arrow_type):
        fields = {f.name: feature_of(f.type) for f in arrow_type}
        return None if any(v is None for v in fields.values()) else fields
    name = _VALUE_NAMES.get(str(arrow_type))
    return None if name is None else value(name)


@dataclass(frozen=True)
class Columns:
    """The export's columns: the fixed ones, then the manifest columns the run carried."""

    schema: object  # pa.Schema of the hf Parquet shards, with the `huggingface` metadata key
    features: dict  # name -> feature JSON, in column order
    carried: tuple[str, ...]  # carried manifest columns, in the order the metadata had them
    as_json: frozenset  # carried columns of a type `datasets` has no feature for: written as JSON text


def columns(metadata_schema) -> Columns:
    """The export's columns for a run whose metadata parts unify to `metadata_schema`."""
    fixed = _fixed()
    taken = owned_names() | {n for n, _, _ in fixed}
    fields, features, carried, as_json = [], {}, [], set()
    for name, arrow_type, feature in fixed:
        fields.append(pa.field(name, arrow_type))
        features[name] = feature
    for f in metadata_schema:
        if f.name in taken:
            continue
        feature = feature_of(f.type)
        arrow_type = f.type
        if feature is None:  # maps, unions, decimals...: kept readable as JSON text
            as_json.add(f.name)
            arrow_type, feature = pa.string(), value("string")
        fields.append(pa.field(f.name, arrow_type))
        features[f.name] = feature
        carried.append(f.name)
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    return Columns(pa.schema(fields, metadata=meta), features, tuple(carried), frozenset(as_json))


def yaml_features(features: dict) -> list:
    """The card's `dataset_info.features` list, as the Hub writes it (datasets' Features._to_yaml_list)."""
    return [{"name": name, **_yaml_type(f)} for name, f in features.items()]


def _yaml_type(feature: dict) -> dict:
    kind = feature.get("_type")
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "Audio":
        return {"dtype": {"audio": {"sampling_rate": feature["sampling_rate"]}}}
    if kind == "List":
        inner = _yaml_type(feature["feature"])
        return {"list": inner.get("dtype", inner.get("struct", inner))}
    return {"struct": yaml_features(feature)}  # a struct: name -> feature


def record(row: dict, cols: Columns, audio: bytes, parquet: bool = True) -> dict:
    """One exported row from its newest metadata record and its audio file's bytes; `parquet`: carried
    columns of a type `datasets` cannot hold become JSON text (for a json file they stay as they are)."""
    chunks = []
    for c in row.get(CHUNKS) or []:
        measures = dict(c.get("measures") or {})  # Arrow maps arrive as [(key, value), ...]
        chunks.append(
            {k: c.get(k) for k in ("index", "text", "start_s", "end_s", "duration_s", "seed", "attempts", "passed")}
            | {"failed": list(c.get("failed") or []), "voice": c.get("voice"), "transcript": c.get("transcript")}
            | {m: _finite(measures.get(m)) for m in CHUNK_MEASURES}
        )
    out = {name: row.get(name) for name in SCALARS}
    out[AUDIO] = {"bytes": audio, "path": posixpath.basename(row["audio_path"])}
    out[CHUNKS] = chunks
    out["revision"] = row.get("revision") or 0
    out["flagged"] = is_flagged(row)
    for name in cols.carried:
        out[name] = jsonable_text(row.get(name)) if parquet and name in cols.as_json else row.get(name)
    return out


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def jsonable(obj):
    """A value json.dumps writes: bytes as base64 text, dates and times as ISO text, maps as dicts."""
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def jsonable_text(obj) -> str | None:
    return None if obj is None else json.dumps(jsonable(obj), sort_keys=True, ensure_ascii=False)
