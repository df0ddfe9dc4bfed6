"""A local shard is on disk before it has its name."""

import os

from pipeline.export.shards import Target


def test_a_local_shard_is_synced_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.realpath(src)))
        real_replace(src, dst)

    with Target(str(tmp_path / "export")) as target:
        local = target.temp_path("train-000000.tar")
        with open(local, "wb") as f:
            f.write(b"shard bytes")
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        target.put(local, "train-000000.tar")
        monkeypatch.undo()

    assert events == [("fsync", os.path.realpath(local)), ("replace", os.path.realpath(local))]
    assert (tmp_path / "export" / "train-000000.tar").read_bytes() == b"shard bytes"
