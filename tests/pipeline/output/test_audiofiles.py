"""Audio keys: a file once written is never replaced, so metadata always describes the bytes it names."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.output.audiofiles import commit_audio, commit_audio_many
from pipeline.output.layout import audio_key, audio_name, audio_shard
from pipeline.output.orphans import remove_orphans


def name(row: str, revision: int = 0) -> str:
    """What write_block hands commit_audio: audio_name less its extension."""
    return audio_name(row, "flac", revision).removesuffix(".flac")


def test_first_write_keeps_the_plain_name_and_a_rewrite_gets_a_content_name(store):
    plain = f"audio/{audio_shard('row-1')}/row-1.flac"
    assert commit_audio(store, name("row-1"), b"run A", "flac") == plain  # its shard folder is made on the way
    key_b = commit_audio(store, name("row-1"), b"run B", "flac")  # an overlapping run, or an orphan's rerun
    assert key_b == audio_key(name("row-1"), "flac", b"run B") and key_b.startswith(plain.removesuffix(".flac") + "-")
    assert store.read(plain) == b"run A"  # never replaced under the first run's metadata
    assert store.read(key_b) == b"run B"
    assert commit_audio(store, name("row-1"), b"run B", "flac") == key_b  # a retried write lands on the same key
    assert commit_audio(store, name("row-1"), b"run A", "flac") == audio_key(name("row-1"), "flac", b"run A")


def test_a_redo_goes_beside_the_first_write_in_the_same_folder(store):
    first = commit_audio(store, name("row-1"), b"take 1", "flac")
    redo = commit_audio(store, name("row-1", 2), b"take 2", "flac")
    assert redo == f"audio/{audio_shard('row-1')}/r2/row-1.flac" and redo.rsplit("/", 2)[0] == first.rsplit("/", 1)[0]
    assert store.read(first) == b"take 1" and store.read(redo) == b"take 2"


def test_many_rows_are_committed_in_parallel_into_their_folders(store):
    rows = {name(f"r{i}"): bytes([i]) * 10 for i in range(12)}
    keys = commit_audio_many(store, rows, "flac")
    assert keys == {n: f"audio/{n}.flac" for n in rows}
    assert len({k.split("/")[1] for k in keys.values()}) > 1  # spread over folders, not one
    assert all(store.read(keys[n]) == data for n, data in rows.items())
    again = commit_audio_many(store, {name("r0"): b"new"}, "flac")
    assert again[name("r0")] != keys[name("r0")] and store.read(again[name("r0")]) == b"new"
    assert commit_audio_many(store, {}, "flac") == {}


def test_orphans_are_found_in_shard_folders_and_in_the_flat_layout_before_them(store):
    """An output begun before shards and resumed after: both layouts' unnamed files go, named ones stay."""
    named = {"a": "audio/a.flac", "b": "audio/r1/b.flac", "c": f"audio/{name('c')}.flac",
             "d": f"audio/{name('d', 1)}.flac"}  # fmt: skip
    orphans = ["audio/c.flac", "audio/r2/a.flac", f"audio/{name('a')}.flac", f"audio/{name('b', 2)}.flac",
               audio_key(name("c"), "flac", b"retry")]  # fmt: skip
    foreign = ["audio/stranger.flac", f"audio/{audio_shard('stranger')}/stranger.flac",
               f"audio/{audio_shard('x')}/c.flac"]  # fmt: skip # not ids of this output; c in x's folder: not ours
    for key in [*named.values(), *orphans, *foreign]:
        store.write(key, b"x")
    rows = pa.Table.from_pylist([{"id": i, "audio_path": p} for i, p in named.items()])
    buf = io.BytesIO()
    pq.write_table(rows, buf)
    store.write("metadata/part-1.parquet", buf.getvalue())
    assert remove_orphans(store, ["a", "b", "c", "d"]).record() == {"temp_files": 0, "unreferenced_audio": 5}
    assert store.find("audio") == sorted([*named.values(), *foreign])
