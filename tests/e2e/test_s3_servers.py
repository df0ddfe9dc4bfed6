"""The test S3 servers (moto, Ceph RGW) behave like S3 for what the pipeline relies on."""

import pytest


@pytest.fixture(params=["moto", pytest.param("ceph", marks=pytest.mark.ceph)])
def s3(request):
    return request.getfixturevalue(f"{request.param}_s3")


def test_round_trip_with_storage_options(s3):
    import s3fs

    bucket = s3.make_bucket()
    # The dict the pipeline receives as storage_options must be enough for s3fs on its own.
    fs = s3fs.S3FileSystem(**s3.storage_options)
    fs.pipe(f"{bucket}/dir/a.bin", b"\x00\x01payload")
    fs.pipe(f"{bucket}/dir/b.bin", b"b")
    assert fs.cat(f"{bucket}/dir/a.bin") == b"\x00\x01payload"
    assert sorted(fs.ls(f"{bucket}/dir", detail=False)) == [f"{bucket}/dir/a.bin",
                                                             f"{bucket}/dir/b.bin"]


def test_create_only_write_refuses_an_existing_key(s3):
    # The sink's commit marker relies on If-None-Match: * (create-only) being enforced.
    bucket = s3.make_bucket()
    fs = s3.filesystem()
    fs.pipe_file(f"{bucket}/_commit.json", b"first", mode="create")
    with pytest.raises(OSError):
        fs.pipe_file(f"{bucket}/_commit.json", b"second", mode="create")
    assert fs.cat(f"{bucket}/_commit.json") == b"first"


def test_buckets_are_isolated(s3):
    a, b = s3.make_bucket(), s3.make_bucket()
    s3.filesystem().pipe(f"{a}/k", b"x")
    assert s3.filesystem().ls(b, detail=False) == []


def test_pipeline_store_commit_is_create_only(s3):
    # What makes a retried write block harmless: its second commit of a part is a no-op.
    from pipeline.storage import Store

    store = Store.open(f"s3://{s3.make_bucket()}/run", s3.storage_options)
    assert store.commit("metadata/part-1.parquet", b"first") is True
    assert store.commit("metadata/part-1.parquet", b"second") is False
    assert store.read("metadata/part-1.parquet") == b"first"
