"""Resume that knows what it did: row hashes, the resume plan, --redo parsing, the latest committed view."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch.plan import (
    MANIFEST_HASHES,
    ResumePlan,
    hash_manifest,
    next_revisions,
    parse_redo,
    plan_resume,
    raw_row_hash,
    row_hash,
)
from pipeline.config import content_hash, validate_config
from pipeline.manifest.rows import RowValues
from pipeline.output.layout import ERRORS, METADATA, audio_name, part_keys
from pipeline.output.read import NEWEST_SCHEMA, Latest, Newest, newest_rows, read_committed_latest
from pipeline.storage import Store

MINIMAL = {"input": {"path": "m.parquet"}, "output": {"path": "out"}, "model": {"weights": "w"}}
ROW = RowValues(
    id="a",
    text="Hello there.",
    voice="v2/en_speaker_1",
    seed=7,
    language="en",
    text_temp=0.6,
    waveform_temp=0.5,
    max_duration=12.0,
)


def cfg(**sections):
    return validate_config({**MINIMAL, **sections})


# ---- row_hash ---------------------------------------------------------------------------------


def test_row_hash_changes_with_every_shaping_value_and_setting():
    base = row_hash(ROW, cfg())
    changed = [
        ROW.__class__(**{**ROW.__dict__, name: value})
        for name, value in (
            ("text", "Hello there!"),
            ("voice", None),
            ("seed", 8),
            ("language", "de"),
            ("text_temp", 0.61),
            ("waveform_temp", None),
            ("max_duration", 11.0),
        )
    ]
    hashes = {row_hash(r, cfg()) for r in changed}
    assert base not in hashes and len(hashes) == len(changed)
    assert row_hash(ROW, cfg(generation={"text_temp": 0.1})) != base  # a config default shapes rows too
    assert row_hash(ROW, cfg(output={"path": "out", "format": "wav"})) != base
    # Neither the id (the key), nor paths, compute or secrets change what the audio is.
    assert row_hash(RowValues(**{**ROW.__dict__, "id": "b"}), cfg()) == base
    assert row_hash(ROW, cfg(compute={"actors": 3, "batch_size": 2})) == base
    assert row_hash(ROW, cfg(output={"path": "elsewhere", "storage_options": {"secret": "x"}})) == base
    assert row_hash(ROW, content_hash(cfg())) == base  # a precomputed content_hash is the same


def test_row_hash_is_the_same_in_another_process_with_another_hash_seed():
    here = row_hash(ROW, "sha256:settings")
    code = (
        "from pipeline.batch.plan import row_hash; from pipeline.manifest.rows import RowValues; "
        f"print(row_hash(RowValues(**{ROW.__dict__!r}), 'sha256:settings'))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.stdout.strip() == here and here.startswith("sha256:") and len(here) == 71


def test_raw_row_hash_matches_parsed_rows_and_tracks_bad_rows():
    raw = {
        "id": "a",
        "text": "Hello there.",
        "voice": "v2/en_speaker_1",
        "seed": 7.0,
        "language": "en",
        "text_temp": 0.6,
        "waveform_temp": 0.5,
        "max_duration": 12,
    }
    assert raw_row_hash(raw, "s") == row_hash(ROW, "s")  # 7.0 and 12 parse to the same values
    poison = {"id": "a", "text": "Hi", "seed": float("inf")}
    fixed = {"id": "a", "text": "Hi", "seed": 3}
    assert raw_row_hash(poison, "s") != raw_row_hash(fixed, "s")
    assert raw_row_hash(poison, "s") == raw_row_hash(dict(poison), "s")
    assert raw_row_hash({"id": "a", "text": b"\xff\xfe"}, "s") != raw_row_hash({"id": "a", "text": b"\xff"}, "s")


def test_hash_manifest_reads_renamed_columns_in_batches(tmp_path):
    from pipeline.manifest.read import inspect_manifest

    table = pa.table(
        {"key": ["a", "b", None], "body": ["Hello there.", "Two.", "x"], "seed": [7.0, None, 1.0], "extra": [1, 2, 3]}
    )
    pq.write_table(table, tmp_path / "m.parquet")
    info = inspect_manifest(str(tmp_path / "m.parquet"), {}, "key", "body")
    config = cfg(input={"path": str(tmp_path), "id_column": "key", "text_column": "body"})
    hashes = hash_manifest(info, config, batch_rows=1)
    settings = content_hash(config)
    assert dict(zip(hashes["id"].to_pylist(), hashes["row_hash"].to_pylist(), strict=True)) == {
        "a": raw_row_hash({"id": "a", "text": "Hello there.", "seed": 7.0}, settings),
        "b": raw_row_hash({"id": "b", "text": "Two.", "seed": None}, settings),
    }


# ---- plan_resume ------------------------------------------------------------------------------


def manifest_of(hashes: dict) -> pa.Table:
    return pa.table({"id": list(hashes), "row_hash": list(hashes.values())}, schema=MANIFEST_HASHES)


def committed_of(ok: dict, errors: dict, flagged=()) -> Latest:
    """ok: id -> stored row_hash; errors: id -> (stage, stored row_hash)."""
    rows = [{"id": i, "revision": 0, "ok": True, "row_hash": h, "flagged": i in flagged} for i, h in ok.items()]
    rows += [{"id": i, "revision": 0, "ok": False, "stage": stage, "row_hash": h} for i, (stage, h) in errors.items()]
    table = pa.Table.from_pylist([r | {"same_revision": 1} for r in rows], schema=NEWEST_SCHEMA)
    return Latest(Newest([], table))


def ids(array) -> set:
    return set(array.to_pylist())


def plan(flagged=(), **kw):
    manifest = {"ok": "h1", "changed": "h2-new", "old": "h3", "err": "h4", "fixed": "h5-new", "new": "h6", "flag": "h7"}
    ok = {"ok": "h1", "changed": "h2", "old": None, "flag": "h7", "gone": "hx"}
    errors = {"err": ("generate", "h4"), "fixed": ("validate", "h5")}
    return plan_resume(manifest_of(manifest), committed_of(ok, errors, flagged), **kw)


def test_plan_sorts_every_id_once():
    p = plan()
    assert ids(p.skip) == {"ok", "old", "err", "flag"} and ids(p.new) == {"new"}
    assert ids(p.redo_changed) == {"changed", "fixed"}  # a fixed error row's input changed: redone unasked
    assert ids(p.retry) == set() and ids(p.redo_chosen) == set()
    assert (p.done, p.kept_errors, p.unknown) == (3, 1, 1)
    assert p.todo == 3
    assert p.describe() == (
        "resuming: 3 done, 1 errors kept (--retry-errors retries them), 2 changed since "
        "(redone), 0 errors retried, 0 chosen, 1 new, 1 written before row hashes "
        "(kept, unchecked)"
    )


def test_retry_errors_and_redo_choices():
    p = plan(retry_errors=True, redo={"ok", "changed"})
    assert ids(p.retry) == {"err"} and ids(p.redo_chosen) == {"ok"} and ids(p.redo_changed) == {"changed", "fixed"}
    assert ids(p.skip) == {"old", "flag"} and ids(p.redo) == {"err", "ok", "changed", "fixed"}
    assert "2 changed since (redone), 1 errors retried, 1 chosen" in p.describe()
    assert "errors kept" not in p.describe()
    flagged = plan(redo="flagged", flagged={"flag"})
    assert ids(flagged.redo_chosen) == {"flag"} and "flag" not in ids(flagged.skip)
    assert ids(plan(redo={"err"}).retry) == {"err"}  # choosing an error row retries it


def test_redo_of_an_unknown_id_is_one_clear_error():
    with pytest.raises(ValueError, match=r"--redo names 1 id\(s\) that are not in the manifest: 'nope'"):
        plan(redo={"nope", "ok"})


def test_a_fresh_output_is_all_new():
    p = plan_resume(manifest_of({"a": "1", "b": "2"}), Latest())
    assert ids(p.new) == {"a", "b"} and ids(p.skip) == set() and isinstance(p, ResumePlan)
    assert p.describe().startswith("resuming: 0 done, 0 changed since")


def test_parse_redo(tmp_path):
    assert parse_redo(None) is None
    assert parse_redo("flagged") == "flagged"
    assert parse_redo(" a, b ,,c") == {"a", "b", "c"}
    ids = tmp_path / "ids.txt"
    ids.write_text("# rows to redo\na\n\n b \n")
    assert parse_redo(str(ids)) == {"a", "b"}
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no ids"):
        parse_redo(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="--redo got no ids"):
        parse_redo(" , ")


# ---- read_committed_latest --------------------------------------------------------------------


def meta_part(store, name, ids, revision=None, hashes=None, flagged=None, durations=None):
    columns = {
        "id": ids,
        "audio_path": [f"audio/{i}.flac" for i in ids],
        "duration_s": durations or [1.0 + n for n in range(len(ids))],
    }
    if flagged is not None:
        columns["flagged"] = flagged
    if hashes is not None:
        columns["row_hash"] = hashes
    if revision is not None:
        columns["revision"] = pa.array([revision] * len(ids), pa.int32())
    _commit(store, f"metadata/part-{name}.parquet", pa.table(columns))


def error_part(store, name, ids, revision=None, hashes=None, stage="generate"):
    columns = {"id": ids, "stage": [stage] * len(ids), "error": ["boom"] * len(ids)}
    if hashes is not None:
        columns["row_hash"] = hashes
    if revision is not None:
        columns["revision"] = pa.array([revision] * len(ids), pa.int32())
    _commit(store, f"errors/part-{name}.parquet", pa.table(columns))


def _commit(store, rel, table):
    import io

    buf = io.BytesIO()
    pq.write_table(table, buf)
    assert store.commit(rel, buf.getvalue())


def write_history(store):
    """An older output (no resume columns), then a run that redid and retried some of its rows."""
    for name in ("metadata", "errors"):
        store.makedirs(name)
    meta_part(store, "old", ["a", "b", "c"], durations=[1.0, 2.0, 3.0])  # legacy: revision 0, no hash
    error_part(store, "old", ["e1", "e2"])
    meta_part(store, "r1", ["b", "e1"], revision=1, hashes=["hb1", "he1"], flagged=[True, False], durations=[20.0, 5.0])
    error_part(store, "r1", ["c"], revision=1, hashes=["hc1"], stage="finish")  # a redo that failed
    _commit(store, "errors/manifest-x.parquet", pa.table({"id": ["dup"], "stage": ["manifest"], "error": ["x"]}))


def check_latest(latest):
    assert latest.ok == {"a": 1.0, "b": 20.0, "e1": 5.0}
    assert sorted(latest.errors) == [("c", "finish"), ("e2", "generate")]  # e1 was fixed; manifest-* ignored
    assert latest.duplicate_ok == 0 and latest.superseded == 3
    assert latest.revisions == {"a": 0, "b": 1, "c": 1, "e1": 1, "e2": 0}
    assert latest.hashes == {"a": None, "b": "hb1", "c": "hc1", "e1": "he1", "e2": None}
    assert latest.flagged == {"b"} and latest.recorded(["a", "b", "c", "e1", "e2", "zz", None]) == {"a", "b", "c", "e1", "e2"}
    assert {i: latest.hashes[i] for i in latest.ok} == {"a": None, "b": "hb1", "e1": "he1"}
    assert dict(latest.errors) == {"c": "finish", "e2": "generate"}
    assert next_revisions(latest, pa.array(["a", "b", "zz"])) == {"a": 1, "b": 2}


def test_latest_record_wins_on_local_disk(tmp_path):
    store = Store.open(str(tmp_path / "out"))
    write_history(store)
    check_latest(read_committed_latest(store))


def test_same_revision_twice_is_a_duplicate(tmp_path):
    store = Store.open(str(tmp_path / "out"))
    write_history(store)
    meta_part(store, "twin", ["b"], revision=1, hashes=["hb1"])  # a second writer at the same revision
    error_part(store, "clash", ["a"])  # ok and error for one id at revision 0
    latest = read_committed_latest(store)
    assert latest.duplicate_ok == 2 and sorted(latest.duplicate_ids) == ["a", "b"]
    assert "a" in latest.ok and ("a", "generate") not in latest.errors  # ok beats an error of its revision


def test_plan_from_latest_view(tmp_path):
    store = Store.open(str(tmp_path / "out"))
    write_history(store)
    latest = read_committed_latest(store)
    manifest = {"a": "ha", "b": "hb1", "c": "hc-fixed", "e1": "he1", "e2": "he2", "n": "hn"}
    p = plan_resume(manifest_of(manifest), latest, retry_errors=True, redo="flagged")
    assert ids(p.skip) == {"a", "e1"} and p.unknown == 1  # "a" predates hashes: kept, counted as unchecked
    assert ids(p.redo_changed) == {"c"} and ids(p.retry) == {"e2"} and ids(p.redo_chosen) == {"b"}
    assert ids(p.new) == {"n"}
    assert next_revisions(latest, p.redo) == {"b": 2, "c": 2, "e2": 1}


def test_an_empty_output_has_nothing(tmp_path):
    latest = read_committed_latest(Store.open(str(tmp_path / "none")))
    assert latest.ok == {} and latest.errors == [] and latest.duplicate_ok == 0


@pytest.mark.slow
def test_latest_record_wins_on_s3(moto_s3):
    bucket = moto_s3.make_bucket()
    store = Store.open(f"s3://{bucket}/out", moto_s3.storage_options)
    write_history(store)
    check_latest(read_committed_latest(store))


# ---- barkpipe run --retry-errors / --redo ------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """`barkpipe run` with the config checks and the runner replaced: what reaches runner.run."""
    import typer
    from typer.testing import CliRunner

    import pipeline.batch.run as runner
    import pipeline.cli.run as run_cli

    class Report:
        warnings: list = []

    seen: list[dict] = []
    monkeypatch.setattr(run_cli, "_load_and_check", lambda config, overrides: (cfg(), Report()))
    monkeypatch.setattr(run_cli, "_report", lambda cfg, summary: None)
    monkeypatch.setattr(runner, "run", lambda cfg, **kwargs: seen.append(kwargs) or {})
    app = typer.Typer()
    app.callback()(lambda: None)
    run_cli.register(app)
    config = tmp_path / "run.yaml"
    config.write_text("{}\n")

    def invoke(*args):
        result = CliRunner().invoke(app, ["run", str(config), *args])
        return result.exit_code, result.output, seen

    return invoke


def test_cli_passes_resume_flags_only_when_set(cli, tmp_path):
    code, out, seen = cli()
    assert code == 0, out
    assert seen[-1] == {"verbose": False}  # the current runner, without resume keywords, keeps working
    code, out, seen = cli("--retry-errors", "--redo", "a,b")
    assert code == 0, out
    assert seen[-1] == {"verbose": False, "retry_errors": True, "redo": {"a", "b"}}
    ids = tmp_path / "redo.txt"
    ids.write_text("x\ny\n")
    assert cli("--redo", str(ids))[2][-1] == {"verbose": False, "redo": {"x", "y"}}
    assert cli("--redo", "flagged")[2][-1] == {"verbose": False, "redo": "flagged"}


def test_cli_bad_redo_is_one_line_exit_2(cli):
    code, out, seen = cli("--redo", ",")
    assert code == 2 and out.strip() == (
        "error: --redo got no ids; pass comma-separated ids, a file of ids, or 'flagged'"
    )
    assert len(seen) == 0


def test_redo_names_never_meet_a_first_write():
    from pipeline.manifest.columns import safe_name

    ids = ["a", "a.r1", "r1", "a/b", "a_b"]
    first = {audio_name(safe_name(i), "flac") for i in ids}
    redone = {audio_name(safe_name(i), "flac", 1) for i in ids} | {audio_name(safe_name(i), "flac", 2) for i in ids}
    assert len(first) == len(ids) and len(redone) == 2 * len(ids) and not first & redone
    assert audio_name("a", "wav") == "ca/a.wav" and audio_name("a", "wav", 3) == "ca/r3/a.wav"
    assert part_keys(["a", "b"], [0, 2]) == ["a", "b@2"]


def test_newest_rows_stream_each_id_once_as_the_accounting_counts_it(tmp_path):
    store = Store.open(str(tmp_path / "out"))
    write_history(store)
    meta_part(store, "clash", ["e2"], revision=0)  # ok and error for one id at one revision: the ok record is kept
    ok = list(newest_rows(store, METADATA, ["duration_s"], batch_rows=1))
    assert sorted((r["id"], r["revision"] or 0, r["duration_s"]) for r in ok) == [
        ("a", 0, 1.0),
        ("b", 1, 20.0),
        ("e1", 1, 5.0),
        ("e2", 0, 1.0),
    ]
    assert set(ok[0]) == {"id", "revision", "duration_s"}  # only the columns asked (a part lacking one: None)
    failed = list(newest_rows(store, ERRORS))
    assert [(r["id"], r["stage"], r["revision"]) for r in failed] == [("c", "finish", 1)]  # manifest-* is not a record
    latest = read_committed_latest(store)
    assert latest.duplicate_ok == 1 and latest.duplicate_ids == ["e2"] and "e2" in latest.ok
    assert [r["id"] for r in newest_rows(store, METADATA, [], latest=latest)] == [r["id"] for r in ok]
