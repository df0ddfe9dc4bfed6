"""Storage helpers: transient-error retries, create-only commits, atomic writes, URL redaction, the sink."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.batch.sink import part_name, read_committed, write_block, write_manifest_errors
from pipeline.storage import Store, is_transient, redact_url, retry


def test_retry_retries_transient_errors_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("503 Service Unavailable: SlowDown")
        return "ok"

    assert retry(flaky, base_delay_s=0) == "ok" and len(calls) == 3
    calls.clear()

    def missing():
        calls.append(1)
        raise FileNotFoundError("no such key")

    with pytest.raises(FileNotFoundError):
        retry(missing, base_delay_s=0)
    assert len(calls) == 1  # a permanent error is not retried
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(FileExistsError()) and not is_transient(KeyError("row 500"))


def test_commit_is_create_only_and_write_replaces(tmp_path):
    store = Store.open(str(tmp_path))
    store.makedirs("metadata")
    assert store.commit("metadata/p.parquet", b"first") is True
    assert store.commit("metadata/p.parquet", b"second") is False
    assert (tmp_path / "metadata" / "p.parquet").read_bytes() == b"first"
    store.write("metadata/a.wav", b"1")
    store.write("metadata/a.wav", b"22")
    assert (tmp_path / "metadata" / "a.wav").read_bytes() == b"22"
    assert sorted(p.name for p in (tmp_path / "metadata").iterdir()) == ["a.wav", "p.parquet"]  # no temp files left


def test_commit_on_an_object_store_uses_create_mode():
    import fsspec

    store = Store(fsspec.filesystem("memory"), "/bucket/run")
    assert store.commit("errors/x.parquet", b"a") is True
    assert store.commit("errors/x.parquet", b"b") is False
    assert store.read("errors/x.parquet") == b"a"


def test_redact_url_hides_userinfo():
    assert redact_url("cannot open s3://AKIA:secret@bucket/x and gs://tok@b") == \
        "cannot open s3://***@bucket/x and gs://***@b"
    assert redact_url("s3://bucket/a@b") == "s3://bucket/a@b"


def _block(rows):
    from pipeline.batch.schema import row_fields

    schema = pa.schema(row_fields())
    full = [{name: r.get(name) for name in schema.names} for r in rows]
    return pa.Table.from_pylist(full, schema=schema).append_column("chapter", pa.array([7] * len(rows), pa.int8()))


def test_write_block_writes_audio_then_parts_and_a_retry_is_harmless(tmp_path):
    store = Store.open(str(tmp_path))
    for name in ("audio", "metadata", "errors"):
        store.makedirs(name)
    block = _block([
        {"id": "a", "ok": True, "audio": b"RIFF", "audio_name": "a.wav", "duration_s": 1.5, "flagged": False,
         "timings": {"generate": 1.0}, "engine_s": 1.0},
        {"id": "b", "ok": False, "error_stage": "voice", "error": "voice 'x' cannot be used"},
    ])
    kwargs = {"output_url": str(tmp_path), "storage_options": {}, "config_hash": "sha256:abc"}
    summary = write_block(block, **kwargs)
    assert summary.to_pylist()[1] == {"id": "b", "ok": False, "flagged": None, "duration_s": None,
                                      "engine_s": None, "stage": "voice", "error": "voice 'x' cannot be used"}
    write_block(block, **kwargs)  # a retried task: same part names, nothing doubles
    assert (tmp_path / "audio" / "a.wav").read_bytes() == b"RIFF"
    assert [p.name for p in (tmp_path / "metadata").iterdir()] == [part_name("metadata", ["a"]).split("/")[1]]
    committed = read_committed(store)
    assert committed.ok == {"a": 1.5} and committed.errors == [("b", "voice")] and committed.duplicate_ok == 0
    import pyarrow.parquet as pq

    meta = pq.read_table(tmp_path / part_name("metadata", ["a"])).to_pylist()[0]
    assert meta["audio_path"] == "audio/a.wav" and meta["config_hash"] == "sha256:abc" and meta["chapter"] == 7
    assert dict(meta["timings"]).keys() == {"generate", "write"}
    assert "audio" not in meta and "ok" not in meta


def test_manifest_errors_are_written_once_and_replaced_when_the_manifest_changes(tmp_path):
    store = Store.open(str(tmp_path))
    store.makedirs("errors")
    records = [{"id": "d", "stage": "manifest", "error": "dup"}] * 2
    assert write_manifest_errors(store, records) is True
    assert write_manifest_errors(store, records) is False
    assert write_manifest_errors(store, records[:1]) is True
    assert len(list((tmp_path / "errors").glob("manifest-*.parquet"))) == 1
    assert read_committed(store).errors == []  # recomputed from the manifest each run, not read back


def test_write_many_on_an_object_store_writes_every_file():
    import fsspec

    store = Store(fsspec.filesystem("memory"), "/bucket/many")
    store.write_many({f"audio/{i}.wav": bytes([i]) for i in range(5)})
    assert [store.read(f"audio/{i}.wav") for i in range(5)] == [bytes([i]) for i in range(5)]
