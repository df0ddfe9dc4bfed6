"""Storage helpers: transient-error retries, create-only commits, atomic writes, URL redaction, the sink."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.output import layout
from pipeline.output.commit import write_block, write_manifest_errors
from pipeline.output.layout import part_name
from pipeline.output.read import read_committed_latest
from pipeline.storage import (
    StorageUnavailable,
    Store,
    UnsafeOutput,
    backoff_delays,
    is_transient,
    redact_url,
    retry,
)


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
    assert (
        redact_url("cannot open s3://AKIA:secret@bucket/x and gs://tok@b")
        == "cannot open s3://***@bucket/x and gs://***@b"
    )
    assert redact_url("s3://bucket/a@b") == "s3://bucket/a@b"


def _block(rows):
    from pipeline.output.schema import row_fields

    schema = pa.schema(row_fields())
    full = [{name: r.get(name) for name in schema.names} for r in rows]
    return pa.Table.from_pylist(full, schema=schema).append_column("chapter", pa.array([7] * len(rows), pa.int8()))


def test_write_block_writes_audio_then_parts_and_a_retry_is_harmless(tmp_path):
    store = Store.open(str(tmp_path))
    for name in ("audio", "metadata", "errors"):
        store.makedirs(name)
    block = _block(
        [
            {
                "id": "a",
                "ok": True,
                "audio": b"RIFF",
                "audio_name": "a.wav",
                "duration_s": 1.5,
                "flagged": False,
                "timings": {"generate": 1.0},
                "engine_s": 1.0,
            },
            {"id": "b", "ok": False, "error_stage": "voice", "error": "voice 'x' cannot be used"},
        ]
    )
    kwargs = {"output_url": str(tmp_path), "storage_options": {}, "config_hash": "sha256:abc", "audio_format": "wav"}
    summary = write_block(block, **kwargs)
    assert summary.to_pylist()[1] == {
        "id": "b",
        "ok": False,
        "flagged": None,
        "duration_s": None,
        "engine_s": None,
        "stage": "voice",
        "error": "voice 'x' cannot be used",
    }
    write_block(block, **kwargs)  # a retried task: same part names, nothing doubles
    assert (tmp_path / "audio" / "a.wav").read_bytes() == b"RIFF"
    journal = tmp_path / layout.journal("metadata")
    assert [p.name for p in journal.iterdir()] == [part_name(layout.journal("metadata"), ["a"]).split("/")[-1]]
    committed = read_committed_latest(store)
    assert committed.ok == {"a": 1.5} and committed.errors == [("b", "voice")] and committed.duplicate_ok == 0
    import pyarrow.parquet as pq

    meta = pq.read_table(tmp_path / part_name(layout.journal("metadata"), ["a"])).to_pylist()[0]
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
    assert read_committed_latest(store).errors == []  # recomputed from the manifest each run, not read back


def test_write_many_on_an_object_store_writes_every_file():
    import fsspec

    store = Store(fsspec.filesystem("memory"), "/bucket/many")
    store.write_many({f"audio/{i}.wav": bytes([i]) for i in range(5)})
    assert [store.read(f"audio/{i}.wav") for i in range(5)] == [bytes([i]) for i in range(5)]


def test_backoff_doubles_to_a_cap_with_jitter_and_stays_within_the_budget():
    delays = list(backoff_delays(300))
    assert 0.125 <= delays[0] <= 0.25 and 0.25 <= delays[1] <= 0.5
    assert max(delays) <= 15 and max(delays) >= 7.5  # reaches the cap region
    assert 290 - 15 <= sum(delays) <= 300  # minutes of retrying, never past the budget
    assert list(backoff_delays(0)) == []


def test_retry_gives_up_after_its_budget_naming_the_url():
    calls = []

    def down():
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(StorageUnavailable) as err:
        retry(down, budget_s=0.3, base_delay_s=0.05, what="s3://AKIA:pw@bucket/out/audio/a.flac")
    message = str(err.value)
    assert "s3://***@bucket/out/audio/a.flac" in message and "pw" not in message
    assert "ConnectionRefusedError" in message and "output.retry_s" in message
    assert len(calls) >= 3
    assert not is_transient(err.value)  # an outer retry loop does not start the budget again


def test_transient_errors_are_recognised_by_class_status_and_message():
    botocore_like = type("EndpointConnectionError", (Exception,), {"__module__": "botocore.exceptions"})
    throttled = type("ClientError", (Exception,), {"__module__": "botocore.exceptions"})
    assert is_transient(botocore_like("Could not connect to the endpoint URL"))
    assert is_transient(throttled("An error occurred (SlowDown) when calling PutObject"))
    assert is_transient(OSError("429 Too Many Requests")) and is_transient(OSError("502 Bad Gateway"))
    assert not is_transient(OSError("403 Forbidden")) and not is_transient(ValueError("timeout in text"))


def test_local_writes_refuse_symlinks_out_of_the_output(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "audio").symlink_to(outside)
    store = Store.open(str(out))
    for call in (
        lambda: store.write("audio/a.flac", b"x"),
        lambda: store.commit("audio/a.flac", b"x"),
        lambda: store.makedirs("audio"),
        lambda: store.remove("audio/a.flac"),
    ):
        with pytest.raises(UnsafeOutput, match="outside"):
            call()
    assert list(outside.iterdir()) == []
    store.remove("audio")  # the link itself may go; its target stays
    assert not (out / "audio").exists() and outside.is_dir()


def test_a_dangling_symlink_at_a_part_name_is_not_a_commit(tmp_path):
    store = Store.open(str(tmp_path))
    store.makedirs("metadata")
    part = tmp_path / "metadata" / "part-x.parquet"
    part.symlink_to(tmp_path / "gone.parquet")
    assert store.glob("metadata/part-*.parquet") == []  # resume does not see it (and does not fail on it)
    assert store.commit("metadata/part-x.parquet", b"real") is True
    assert not part.is_symlink() and part.read_bytes() == b"real"
    (tmp_path / "metadata" / "b.flac").symlink_to("/etc/hostname")
    store.write("metadata/b.flac", b"ours")  # replaces the link, never writes through it
    assert (tmp_path / "metadata" / "b.flac").read_bytes() == b"ours" and not (
        tmp_path / "metadata" / "b.flac"
    ).is_symlink()


@pytest.fixture
def proxied_s3(moto_s3):
    from support.faults import OutageProxy
    from support.s3servers import S3Endpoint

    with OutageProxy(moto_s3.endpoint_url) as proxy:
        bucket = moto_s3.make_bucket()
        yield proxy, S3Endpoint(proxy.url, moto_s3.key, moto_s3.secret), bucket


@pytest.mark.slow
def test_writes_ride_out_an_s3_outage(proxied_s3):
    import time

    proxy, endpoint, bucket = proxied_s3
    store = Store.open(f"s3://{bucket}/run", endpoint.storage_options, retry_s=60)
    assert store.commit("metadata/p1.parquet", b"before")
    # moto stays up; every connection to it is refused for 30 s (the old 4-try retry died after ~20 s).
    back = proxy.outage(30)
    start = time.monotonic()
    assert store.commit("metadata/p2.parquet", b"during") is True
    store.write("audio/a.flac", b"during")
    back.join()
    assert time.monotonic() - start >= 29
    assert store.read("metadata/p2.parquet") == b"during" and store.read("audio/a.flac") == b"during"


@pytest.mark.slow
def test_an_outage_longer_than_retry_s_is_one_clear_error(proxied_s3):
    proxy, endpoint, bucket = proxied_s3
    store = Store.open(f"s3://{bucket}/run", endpoint.storage_options, retry_s=2)
    proxy.pause()
    with pytest.raises(StorageUnavailable, match=rf"storage at 's3://{bucket}/run/metadata/p.parquet' kept failing"):
        store.commit("metadata/p.parquet", b"x")
    proxy.resume()


def test_find_lists_files_at_any_depth_and_remove_files_deletes_them(tmp_path):
    store = Store.open(str(tmp_path / "out"))
    for rel in ["audio/a.wav", "audio/r1/a.wav", "metadata/part-1.parquet"]:
        store.write(rel, b"x")
    (tmp_path / "elsewhere.wav").write_bytes(b"not ours")
    (tmp_path / "out" / "audio" / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    assert store.find("audio") == ["audio/a.wav", "audio/r1/a.wav"] and store.find("errors") == []
    store.remove_files(["audio/r1/a.wav", "audio/gone.wav"])  # one already gone is fine
    assert store.find("audio") == ["audio/a.wav"] and (tmp_path / "elsewhere.wav").exists()


def test_a_rename_that_fails_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno
    import os

    from pipeline.storagefaults import OutputFault

    def refused(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", dst)

    store = Store.open(str(tmp_path / "out"))
    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OutputFault, match=r"permission denied \(EACCES\) while writing summary.json"):
        store.write("summary.json", b"{}")
    assert os.listdir(tmp_path / "out") == []
