"""Writing results: audio files first, then one create-only metadata and errors part per block, in the journal.

Parts go to the journal (layout.journal), which a publish folds into the view (output/publish.py).
Only ids in committed parts count as done, so an audio file without metadata (a crash or a full
disk in between) is an orphan, which the next run removes when it starts (output/orphans.py). Part
names are a digest of their ids (layout.part_name), so a retried block finds its own part already
there instead of writing it twice. A write the storage refuses (full, quota, read-only, denied)
raises storage.OutputFault, which ends the run with one line; it is never a row's error.
"""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.output.audiofiles import commit_audio_many
from pipeline.output.layout import ERRORS, MANIFEST_PREFIX, METADATA, journal, part_glob, part_keys, part_name
from pipeline.output.schema import TRANSIENT_COLUMNS, error_schema, summary_schema
from pipeline.redact import scrub
from pipeline.storage import DEFAULT_RETRY_S, Store


def to_parquet(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_block(batch, *, output_url: str, storage_options: dict, config_hash: str, audio_format: str,
                retry_s: float = DEFAULT_RETRY_S, secrets: tuple[str, ...] = ()):  # fmt: skip
    """Ray Data map_batches function: write one block of synthesized rows, return per-row summaries.

    Audio goes first, create-only (output/audiofiles.py); the metadata part then records the key
    each file really went to. secrets: values scrubbed from error messages before they are stored.
    """
    store = Store.open(output_url, storage_options, retry_s=retry_s)
    ok = batch.filter(pc.equal(batch["ok"], True))
    bad = batch.filter(pc.invert(pc.equal(batch["ok"], True)))
    if ok.num_rows:
        start = time.perf_counter()
        suffix = len(audio_format) + 1
        names = [n[:-suffix] for n in ok["audio_name"].to_pylist()]  # "ca/r1/a.flac" -> "ca/r1/a"
        keys = commit_audio_many(store, dict(zip(names, ok["audio"].to_pylist(), strict=True)), audio_format)
        write_s = (time.perf_counter() - start) / ok.num_rows  # the block's audio goes out together
        ids = ok["id"].to_pylist()
        metadata = _metadata(ok, write_s, config_hash, [keys[n] for n in names])
        store.commit(part_name(journal(METADATA), part_keys(ids, _revisions(ok))), to_parquet(metadata))
    messages = [None if m is None else scrub(m, secrets) for m in batch["error"].to_pylist()]
    if bad.num_rows:
        bad_messages = [m for m, good in zip(messages, batch["ok"].to_pylist(), strict=True) if good is not True]
        errors = pa.table(
            {"id": bad["id"], "stage": bad["error_stage"], "error": pa.array(bad_messages, pa.string()),
             "row_hash": bad["row_hash"], "revision": bad["revision"]},
            schema=error_schema(),
        )  # fmt: skip
        ids = [str(i) for i in bad["id"].to_pylist()]
        store.commit(part_name(journal(ERRORS), part_keys(ids, _revisions(bad))), to_parquet(errors))
    return pa.table(
        {
            "id": batch["id"],
            "ok": batch["ok"],
            "flagged": batch["flagged"],
            "duration_s": batch["duration_s"],
            "engine_s": batch["engine_s"],
            "stage": batch["error_stage"],
            "error": pa.array(messages, pa.string()),
        },
        schema=summary_schema(),
    )


def _revisions(table) -> list[int]:
    return [r or 0 for r in table["revision"].to_pylist()]


def _metadata(ok, write_s: float, config_hash: str, audio_keys: list[str]):
    """Metadata rows: the stage's columns minus the audio bytes, plus audio_path (the key the
    audio went to) and the write time."""
    timings = [dict(pairs) | {"write": write_s} for pairs in ok["timings"].to_pylist()]  # pairs: (stage, s)
    table = ok.drop_columns(list(TRANSIENT_COLUMNS))
    table = table.set_column(
        table.schema.get_field_index("timings"), "timings", pa.array(timings, type=ok.schema.field("timings").type)
    )
    paths = pa.array(audio_keys, pa.string())
    table = table.add_column(1, "audio_path", paths)
    return table.append_column("config_hash", pa.array([config_hash] * ok.num_rows, pa.string()))


def write_manifest_errors(store: Store, records: list[dict]) -> bool:
    """Commit the manifest-level error rows once; their name is a digest of their content."""
    if not records:
        return False
    table = pa.Table.from_pylist([{"revision": 0} | r for r in records], schema=error_schema())
    name = part_name(ERRORS, [f"{r['id']!r}|{r['error']}" for r in records], MANIFEST_PREFIX)
    # Manifest errors describe the current manifest only; older ones would be counted twice.
    for stale in store.glob(part_glob(ERRORS, MANIFEST_PREFIX)):
        if not stale.endswith(name.rsplit("/", 1)[1]):
            store.remove(f"{ERRORS}/{stale.rsplit('/', 1)[1]}")
    return store.commit(name, to_parquet(table))


def manifest_error_view(records: list[dict], recorded: set) -> list[dict]:
    """The manifest's rejected rows as errors/ shows them: one row per rejected id, none for an id that has
    a record (its newest record is its row in the view), so each id is in metadata/ or errors/ once.

    records: manifest.columns.id_problems' rows (one per input row); recorded: ids with a committed record.
    Null ids are no ids: one row stands for all of them. summary.json's manifest_errors counts input rows.
    """
    seen: dict = {}
    for record in records:
        if record["id"] not in recorded:
            seen.setdefault(record["id"], record)
    return list(seen.values())
