"""`barkpipe export`: stream a run's newest finished rows into Hugging Face Parquet or WebDataset shards."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.export.card import Provenance, card_text
from pipeline.export.features import columns, record, yaml_features
from pipeline.export.hf import HfWriter
from pipeline.export.rows import DEFAULT_BATCH_ROWS, Counts, Selection, iter_rows, metadata_parts
from pipeline.export.shards import DEFAULT_SHARD_SIZE, Target, parse_shard_size
from pipeline.export.webdataset import WdsWriter
from pipeline.output.layout import METADATA
from pipeline.output.read import read_schema
from pipeline.output.summary import read_summary
from pipeline.storage import Store, redact_url

FORMATS = ("hf", "webdataset")
CARD = "README.md"
PROGRESS_ROWS = 500  # a progress line every this many rows written
MISSING_SHOWN = 5  # ids named when rows' audio files are missing
# Audio files read at once, ahead of the writer, from object storage: each read is a round trip, and
# in flight together they overlap. A local output is read one file at a time: there 16 threads cost
# more CPU than they saved (a 1M-row export on a 2-core machine, bench/RESULTS.md).
READ_AHEAD = 16


@dataclass
class ExportResult:
    out: str
    format: str
    splits: dict = field(default_factory=dict)  # split -> {"rows", "files", "bytes"}
    files: list = field(default_factory=list)  # relative to out, card and shards
    hours: float = 0.0
    counts: Counts = field(default_factory=Counts)
    removed: list = field(default_factory=list)  # stale files of an earlier export into out


def export(
    output: str,
    out: str,
    fmt: str,
    selection: Selection | None = None,
    shard_size: str = DEFAULT_SHARD_SIZE,
    storage_options: dict | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    say: Callable[[str], None] = lambda line: None,
) -> ExportResult:
    """Export the run under `output` into `out`. Every run of the same arguments on the same output
    rewrites the same files byte for byte (deterministic order, names and metadata); files an earlier
    export listed in its marker and this one did not write are removed."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    selection = selection or Selection()
    size = parse_shard_size(shard_size)
    source = Store.open(output, storage_options)
    parts = metadata_parts(source)
    if not parts:
        raise FileNotFoundError(
            f"no finished rows under {redact_url(output)}/{METADATA}/; point OUTPUT at a run's output.path"
        )
    cols = columns(_unified_schema(source, parts))
    target = Target(out, storage_options)
    target.refuse_foreign(source)
    result = ExportResult(out, fmt)
    prov = Provenance()
    with target:
        writer = HfWriter(target, cols, size, say) if fmt == "hf" else WdsWriter(target, size, say)
        rows = 0
        ahead = 1 if source.local else READ_AHEAD
        for split, row, audio in with_audio(source, iter_rows(source, selection, batch_rows, result.counts), ahead):
            if audio is None:
                result.counts.missing_audio.append(row["id"])  # that row's problem; the export goes on
                continue
            writer.add(split, record(row, cols, audio, parquet=fmt == "hf"))
            prov.add(split, row)
            rows += 1
            if rows % PROGRESS_ROWS == 0:
                say(f"{rows} rows exported (of at most {result.counts.finished} finished)")
        written = writer.close()
        if not written:
            raise ValueError(f"nothing to export: {_left_out_line(result.counts) or 'the run has no finished rows'}")
        for split in [name for name, _ in selection.splits if name in written]:  # in --split's order
            shards = written[split]
            result.splits[split] = {
                "rows": sum(n for _, n in shards),
                "files": len(shards),
                "bytes": sum(target.size(rel) for rel, _ in shards),
            }
        result.files = [rel for shards in written.values() for rel, _ in shards] + [CARD]
        card = card_text(
            fmt,
            yaml_features(cols.features) if fmt == "hf" else None,
            result.splits,
            prov,
            read_summary(source),
            selection.describe(),
            _left_out(result.counts),
        )
        target.store.write(CARD, card.encode("utf-8"))
        marker = {"format": fmt, "selection": selection.describe(), "shard_size": shard_size,
                  "splits": {s: v["rows"] for s, v in result.splits.items()}}  # fmt: skip
        result.removed = target.finish(result.files, marker)
    result.hours = sum(prov.audio_s.values()) / 3600.0
    return result


def with_audio(source: Store, rows: Iterable[tuple[str, dict]], ahead: int = READ_AHEAD,
               ) -> Iterator[tuple[str, dict, bytes | None]]:  # fmt: skip
    """(split, row, its audio bytes or None where the file is missing), in the rows' order, with up to
    `ahead` reads in flight (so at most that many files' bytes held)."""

    def read(row: dict) -> bytes | None:
        try:
            return source.read(row["audio_path"])
        except FileNotFoundError:
            return None

    if ahead <= 1:
        for split, row in rows:
            yield split, row, read(row)
        return
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        pending: deque = deque()
        for split, row in rows:
            pending.append((split, row, pool.submit(read, row)))
            if len(pending) >= ahead:
                split_, row_, audio = pending.popleft()
                yield split_, row_, audio.result()
        while pending:
            split_, row_, audio = pending.popleft()
            yield split_, row_, audio.result()


def _unified_schema(source, parts: list[str]):
    """One schema over every metadata file's footer (runs of different manifests carry different columns)."""
    schemas = [read_schema(source, p) for p in parts]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"the metadata parts disagree on a column's type ({exc}); export each run on its own"
        ) from None


def _left_out(counts: Counts) -> dict[str, int]:
    return {
        "error rows": counts.error_rows,
        "flagged rows": counts.flagged_left,
        "rows below --min-quality": counts.quality_left,
        "rows whose audio file is missing": len(counts.missing_audio),
    }


def _left_out_line(counts: Counts) -> str:
    hints = {"flagged rows": " (--include-flagged brings them)"}
    parts = [f"{n} {why}{hints.get(why, '')}" for why, n in _left_out(counts).items() if n]
    return f"{counts.finished} finished rows; left out: " + ", ".join(parts) if parts else ""


def describe(result: ExportResult) -> list[str]:
    """The command's closing lines: what was left out, then what was written."""
    lines = []
    left = _left_out_line(result.counts)
    if left:
        lines.append(left)
    if result.counts.missing_audio:
        shown = ", ".join(repr(i) for i in result.counts.missing_audio[:MISSING_SHOWN])
        lines.append(f"warning: {len(result.counts.missing_audio)} row(s) skipped, audio file missing: {shown}")
    if result.removed:
        lines.append(f"removed {len(result.removed)} file(s) of the earlier export that this one did not write")
    splits = ", ".join(f"{s} {v['rows']} rows / {v['files']} shard(s)" for s, v in result.splits.items())
    lines.append(
        f"wrote {redact_url(result.out)} ({result.format}): {splits}; {result.hours:.3f} h of audio; "
        f"{len(result.files) - 1} shard(s) + {CARD}"
    )
    return lines
