"""Publishing the view: one row per id in metadata/ or errors/, older records and their audio in history/,
and a crash at any write of a publish loses nothing and doubles nothing (local folder and moto S3)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from pipeline.output.commit import to_parquet
from pipeline.output.layout import ERRORS, HISTORY, METADATA, VIEW_INDEX, history, journal, part_keys, part_name
from pipeline.output.publish import STEP_DELETED, STEP_FILES, STEP_INDEX, publish
from pipeline.output.read import load_index, read_committed_latest
from pipeline.output.schema import error_schema


class Crash(Exception):
    """The process died here."""


def _ok(store, kind_dir: str, rows: list[tuple[str, int]], tag: str) -> None:
    """Commit audio, then one metadata part of (id, revision) rows into kind_dir (the journal or, as an
    older release did, metadata/)."""
    records = []
    for row_id, revision in rows:
        key = f"audio/{row_id}.wav" if revision == 0 else f"audio/r{revision}/{row_id}.wav"
        store.commit(key, f"{row_id}@{revision}:{tag}".encode())
        records.append({"id": row_id, "audio_path": key, "duration_s": 1.0 + revision, "revision": revision,
                        "row_hash": tag, "flagged": False, "text": f"{row_id} take {revision}"})  # fmt: skip
    ids, revisions = zip(*rows, strict=True)
    store.commit(part_name(kind_dir, part_keys(list(ids), list(revisions))), to_parquet(pa.Table.from_pylist(records)))


def _err(store, kind_dir: str, rows: list[tuple[str, int]]) -> None:
    table = pa.Table.from_pylist(
        [{"id": i, "stage": "voice", "error": "no voice", "row_hash": "h", "revision": r} for i, r in rows],
        schema=error_schema(),
    )
    ids, revisions = zip(*rows, strict=True)
    store.commit(part_name(kind_dir, part_keys(list(ids), list(revisions))), to_parquet(table))


def _folder(store, rel: str) -> list[dict]:
    """What a consumer with pyarrow (or pandas) reads from a folder: every Parquet file in it."""
    if not store.holds(rel):
        return []
    return pads.dataset(store.path(rel), filesystem=store.fs, format="parquet").to_table().to_pylist()


def _first(store) -> None:
    """a, b ok and c an error, at revision 0 (_second redoes a and c ok, b into an error)."""
    _ok(store, journal(METADATA), [("a", 0), ("b", 0)], "first")
    _err(store, journal(ERRORS), [("c", 0)])


def _second(store) -> None:
    _ok(store, journal(METADATA), [("a", 1), ("c", 1)], "second")
    _err(store, journal(ERRORS), [("b", 1)])


def check_view(store) -> None:
    """After the second round: each id once, in one folder, newest revision; history holds the rest."""
    meta, errors = _folder(store, METADATA), _folder(store, ERRORS)
    assert sorted((r["id"], r["revision"]) for r in meta) == [("a", 1), ("c", 1)]
    assert [(r["id"], r["revision"]) for r in errors] == [("b", 1)]
    past = _folder(store, history(METADATA))
    assert sorted((r["id"], r["revision"]) for r in past) == [("a", 0), ("b", 0)]
    assert [(r["id"], r["revision"]) for r in _folder(store, history(ERRORS))] == [("c", 0)]
    for row in meta + past:  # every audio_path resolves, relative to the root, to that row's own bytes
        assert store.read(row["audio_path"]).startswith(f"{row['id']}@{row['revision']}:".encode())
    assert {r["audio_path"] for r in past} == {"history/audio/a.wav", "history/audio/b.wav"}
    assert not store.exists("audio/a.wav") and not store.exists("audio/b.wav")  # moved, not copied
    assert store.glob(f"{journal(METADATA)}/*") == [] and store.glob(f"{journal(ERRORS)}/*") == []
    index = load_index(store)
    assert index.pending == []


def check_reader(store) -> None:
    """barkpipe's own reader sees the newest record of each id exactly once, whatever the publish did."""
    latest = read_committed_latest(store)
    assert set(latest.ok) == {"a", "c"} and latest.errors == [("b", "voice")]
    assert latest.revisions == {"a": 1, "b": 1, "c": 1} and latest.duplicate_ok == 0


def test_publish_makes_one_row_per_id_and_keeps_the_rest_in_history(store):
    _first(store)
    first = publish(store)
    assert first.absorbed == 2 and first.rows[METADATA] == 2 and first.rows[ERRORS] == 1
    _second(store)
    done = publish(store)
    assert done.moved_audio == 2 and done.duplicates == 0
    check_view(store)
    check_reader(store)
    assert publish(store).absorbed == 0  # nothing new: nothing rewritten
    check_view(store)


@pytest.mark.parametrize("step", [STEP_FILES, STEP_INDEX, STEP_DELETED])
def test_a_crash_between_steps_loses_nothing_and_the_next_publish_finishes(store, step):
    _first(store)
    publish(store)
    _second(store)

    def die(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        publish(store, on_step=die)
    check_reader(store)
    publish(store)
    check_view(store)
    check_reader(store)


def test_a_crash_at_any_write_loses_nothing_and_doubles_nothing(store):
    """Kill the publish at its n-th write or delete, for every n a clean publish makes."""
    writes = _count_writes(store)
    assert writes > 8
    for n in range(writes):
        fresh = type(store)(store.fs, f"{store.root}-{n}", store.retry_s)
        fresh.makedirs()
        _first(fresh)
        publish(fresh)
        _second(fresh)
        _die_at(fresh, n)
        with pytest.raises(Crash):
            publish(fresh)
        for name in ("commit", "write", "remove_files"):
            del fresh.__dict__[name]
        check_reader(fresh)
        publish(fresh)
        check_view(fresh)


def _count_writes(store) -> int:
    probe = type(store)(store.fs, f"{store.root}-probe", store.retry_s)
    probe.makedirs()
    _first(probe)
    publish(probe)
    _second(probe)
    calls = []
    _die_at(probe, 10**9, calls)
    publish(probe)
    return len(calls)


def _die_at(store, n: int, calls: list | None = None) -> None:
    """Make the store's n-th write, commit or delete (from 0) raise Crash before it happens."""
    calls = calls if calls is not None else []
    for name in ("commit", "write", "remove_files"):
        real = getattr(store, name)

        def wrapped(*args, _real=real, **kwargs):
            if len(calls) == n:
                raise Crash(f"write {n}")
            calls.append(args[0])
            return _real(*args, **kwargs)

        setattr(store, name, wrapped)


def test_an_older_layout_is_migrated_by_the_first_publish(store):
    """Parts straight in metadata/ and errors/, older revisions side by side, audio at audio/<name> and
    audio/r<n>/<name>, no index: read as they are, then migrated into the view by the first publish."""
    _ok(store, METADATA, [("a", 0), ("b", 0)], "first")
    _err(store, ERRORS, [("c", 0)])
    _ok(store, METADATA, [("a", 1), ("c", 1)], "second")
    _err(store, ERRORS, [("b", 1)])
    check_reader(store)  # before any publish: the reader takes the old parts as journal parts
    assert not store.exists(VIEW_INDEX)
    publish(store)
    check_view(store)
    check_reader(store)
    assert store.glob(f"{METADATA}/part-*") == [] and store.glob(f"{ERRORS}/part-*") == []
    assert json.loads(store.read(VIEW_INDEX))["version"] == 1


def test_duplicates_at_one_revision_are_counted_and_kept_in_history(store):
    _ok(store, journal(METADATA), [("a", 0)], "one")
    store.commit(f"{journal(METADATA)}/part-extra.parquet", to_parquet(pa.Table.from_pylist(
        [{"id": "a", "audio_path": "audio/a-copy.wav", "duration_s": 1.0, "revision": 0, "row_hash": "one",
          "flagged": False, "text": "a"}])))  # fmt: skip
    store.commit("audio/a-copy.wav", b"a@0:copy")
    assert read_committed_latest(store).duplicate_ok == 1
    done = publish(store)
    assert done.duplicates == 1 and done.duplicate_ids == ["a"]
    assert [r["id"] for r in _folder(store, METADATA)] == ["a"]
    assert [r["id"] for r in _folder(store, history(METADATA))] == ["a"]
    assert store.glob(f"{HISTORY}/audio/*")


def test_the_view_is_compacted_into_few_files_and_full_files_are_kept(store):
    for block in range(10):
        _ok(store, journal(METADATA), [(f"id{block}-{i}", 0) for i in range(5)], "x")
    publish(store, rows_per_file=20)
    files = load_index(store).files[METADATA]
    assert sorted(f["rows"] for f in files) == [10, 20, 20]  # 50 rows of 10 parts: 3 files
    _ok(store, journal(METADATA), [("late", 0)], "x")
    publish(store, rows_per_file=20)
    after = load_index(store).files[METADATA]
    full = [f for f in files if f["rows"] == 20]
    assert all(f in after for f in full) and sum(f["rows"] for f in after) == 51  # full files stay as they are
    assert len(_folder(store, METADATA)) == 51
