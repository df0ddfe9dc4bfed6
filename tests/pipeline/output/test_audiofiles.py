"""Audio keys: a file once written is never replaced, so metadata always describes the bytes it names."""

from __future__ import annotations

import pytest

from pipeline.output.audiofiles import commit_audio, commit_audio_many
from pipeline.output.layout import audio_key, audio_stems
from pipeline.storage import Store


@pytest.fixture(params=["local", "moto"])
def store(request, tmp_path):
    if request.param == "local":
        return Store.open(str(tmp_path / "out"))
    s3 = request.getfixturevalue("moto_s3")
    return Store.open(f"s3://{s3.make_bucket()}/out", s3.storage_options)


def test_first_write_keeps_the_plain_name_and_a_rewrite_gets_a_content_name(store):
    store.makedirs("audio")
    assert commit_audio(store, "row-1", b"run A", "flac") == "audio/row-1.flac"
    key_b = commit_audio(store, "row-1", b"run B", "flac")  # an overlapping run, or a redo of the row
    assert key_b == audio_key("row-1", "flac", b"run B") and key_b.startswith("audio/row-1-")
    assert store.read("audio/row-1.flac") == b"run A"  # never replaced under the first run's metadata
    assert store.read(key_b) == b"run B"
    assert commit_audio(store, "row-1", b"run B", "flac") == key_b  # a retried write lands on the same key
    assert commit_audio(store, "row-1", b"run A", "flac") == audio_key("row-1", "flac", b"run A")


def test_many_rows_are_committed_in_parallel(store):
    keys = commit_audio_many(store, {f"r{i}": bytes([i]) * 10 for i in range(12)}, "wav")
    assert keys == {f"r{i}": f"audio/r{i}.wav" for i in range(12)}
    assert all(store.read(keys[f"r{i}"]) == bytes([i]) * 10 for i in range(12))
    again = commit_audio_many(store, {"r0": b"new"}, "wav")
    assert again["r0"] != "audio/r0.wav" and store.read(again["r0"]) == b"new"
    assert commit_audio_many(store, {}, "wav") == {}


def test_audio_stems_name_the_ids_a_key_may_belong_to_and_nothing_else():
    digest = "0123456789abcdef"
    assert audio_stems("audio/a.wav") == ("a",)
    assert audio_stems("audio/r3/a.flac") == ("a",)
    assert audio_stems(audio_key("a", "wav", b"bytes")) == (audio_key("a", "wav", b"bytes")[6:-4], "a")
    assert audio_stems(f"audio/x-{digest}.opus") == (f"x-{digest}", "x")
    for foreign in ["audio/a.txt", "audio/sub/a.wav", "audio/r0/a.wav", "metadata/a.wav", "audio/.wav"]:
        assert audio_stems(foreign) == (), foreign
