"""The whole pipeline on local Ray with tiny random weights and a local output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.batch.run import check_resources, prepare, run
from pipeline.config import validate_config
from pipeline.output.layout import HISTORY, METADATA, journal

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-do-not-print-0f9c"  # passed as a storage option; must never be written anywhere
GOOD = [
    {"id": "plain", "text": "Hello there, this is a short row.", "voice": None, "seed": 1, "chapter": 1},
    {"id": "../../escape", "text": "A hostile id must stay inside the output.", "voice": None, "seed": 2, "chapter": 1},
    {
        "id": "voiced",
        "text": "First paragraph.\n\nSecond paragraph here.",
        "voice": "v2/en_speaker_1",
        "seed": None,
        "chapter": 2,
    },
]
BAD = [
    {"id": "empty", "text": " ", "voice": None, "seed": None, "chapter": 3},
    {"id": "nobody", "text": "Unknown voice.", "voice": "no_such_voice", "seed": None, "chapter": 3},
    {"id": "twice", "text": "First copy.", "voice": None, "seed": None, "chapter": 4},
    {"id": "twice", "text": "Second copy.", "voice": None, "seed": None, "chapter": 4},
    {"id": None, "text": "No id at all.", "voice": None, "seed": None, "chapter": 4},
]
SCHEMA = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("voice", pa.string()), ("seed", pa.int64()), ("chapter", pa.int32())]
)


def write_manifest(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


def config_dict(manifest: Path, out: Path, weights: Path, **compute) -> dict:
    return {
        "input": {"path": str(manifest)},
        "output": {"path": str(out), "format": "flac", "storage_options": {"secret_token": SECRET}},
        "model": {"weights": str(weights), "device": "cpu"},
        "generation": {"max_duration": 1.0},
        "segment": {"target_seconds": 4.0, "max_seconds": 6.0},
        "compute": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 4, "window_rows": 4, **compute},
    }


def read_parts(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def first_run(ray_local, tiny_weights, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    manifest = write_manifest(tmp / "m.parquet", GOOD + BAD)
    cfg = validate_config(config_dict(manifest, tmp / "out", tiny_weights, gpus_per_actor=1))
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"device": "auto"})})
    summary = run(cfg, progress=False)
    return cfg, tmp / "out", summary


def test_every_row_is_written_or_errored(first_run):
    _, out, summary = first_run
    assert summary["accounted"] is True
    assert summary["input_rows"] == len(GOOD) + len(BAD)
    assert summary["ok"] == len(GOOD) and summary["errors"] == len(BAD)
    assert json.loads((out / "summary.json").read_text())["ok"] == len(GOOD)
    assert summary["this_run"]["rows_per_s"] > 0 and summary["this_run"]["audio_s"] > 0


def test_audio_and_metadata_agree(first_run):
    _, out, _ = first_run
    meta = read_parts(out / "metadata")
    assert sorted(r["id"] for r in meta) == sorted(r["id"] for r in GOOD)
    audio_files = {p.relative_to(out).as_posix() for p in (out / "audio").rglob("*") if p.is_file()}
    assert audio_files == {r["audio_path"] for r in meta}
    required = {
        "id",
        "audio_path",
        "duration_s",
        "sample_rate",
        "n_chunks",
        "seed",
        "voice",
        "model",
        "model_checksum",
        "timings",
        "chunks",
        "chapter",
        "node_id",
    }
    assert required <= set(meta[0]) and not {"pcm", "plan", "audio"} & set(meta[0])
    import ray

    assert {r["node_id"] for r in meta} == {ray.get_runtime_context().get_node_id()}  # the one local node
    for row in meta:
        path = (out / row["audio_path"]).resolve()
        assert (out / "audio").resolve() in path.parents  # no id escapes audio/
        data, rate = sf.read(path)
        assert rate == row["sample_rate"] == 24_000
        assert abs(len(data) / rate - row["duration_s"]) < 0.01
        assert len(row["chunks"]) == row["n_chunks"] >= 1
        assert {"prepare", "generate", "join", "encode", "write"} <= {k for k, _ in row["timings"]}
        assert row["model_checksum"].startswith("sha256:")
    by_id = {r["id"]: r for r in meta}
    assert by_id["voiced"]["voice"] == "v2/en_speaker_1" and by_id["plain"]["seed"] == 1
    assert ".." not in by_id["../../escape"]["audio_path"]


def test_errors_name_row_stage_and_fix(first_run):
    _, out, _ = first_run
    errors = read_parts(out / "errors")
    stages = sorted((r["id"] or "", r["stage"]) for r in errors)
    assert stages == [
        ("", "manifest"),
        ("empty", "validate"),
        ("nobody", "voice"),
        ("twice", "manifest"),  # one row per rejected id: errors/ holds each id once
    ]
    assert all(len(r["error"]) > 20 for r in errors)


def test_secrets_never_reach_outputs(first_run):
    _, out, summary = first_run
    assert summary["config"]["output"]["storage_options"]["secret_token"] == "***"
    for path in out.rglob("*"):
        if path.suffix in (".json", ".parquet"):
            text = (
                path.read_text() if path.suffix == ".json" else json.dumps(pq.read_table(path).to_pylist(), default=str)
            )
            assert SECRET not in text, path


def test_rerun_resumes_and_writes_nothing(first_run):
    cfg, out, first = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != "summary.json"}
    summary = run(cfg, progress=False)
    assert summary["this_run"]["rows"] == 0
    assert summary["this_run"]["skipped_already_done"] == len(GOOD) + 2  # ok rows + own-reason errors
    assert summary["accounted"] and summary["ok"] == first["ok"] and summary["errors"] == first["errors"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != "summary.json"} == before


def test_resume_redoes_what_changed_and_what_was_asked_without_losing_a_row(ray_local, tiny_weights, tmp_path):
    rows = [{"id": f"r{i}", "text": f"Row {i} has words.", "voice": None, "seed": i, "chapter": i} for i in range(4)]
    manifest = write_manifest(
        tmp_path / "m.parquet", rows + [{"id": "bad", "text": " ", "voice": None, "seed": None, "chapter": 9}]
    )
    out = tmp_path / "out"
    cfg = validate_config(config_dict(manifest, out, tiny_weights))
    first = run(cfg, progress=False)
    assert first["accounted"] and first["ok"] == 4 and first["errors"] == 1
    old_audio = {r["id"]: (out / r["audio_path"]).read_bytes() for r in read_parts(out / "metadata")}

    rows[1]["text"] = "Row 1 now says something else."  # an edited manifest row
    write_manifest(manifest, rows + [{"id": "bad", "text": " ", "voice": None, "seed": None, "chapter": 9}])
    again = run(cfg, progress=False, redo={"r2"}, retry_errors=True)
    assert again["resume"] == {
        "kept": 2,
        "kept_errors": 0,
        "redone_changed": 1,
        "retried_errors": 1,
        "redone_chosen": 1,
    }
    assert again["this_run"]["rows"] == 3 and again["accounted"] and again["exit_code"] == 0
    assert again["ok"] == 4 and again["errors"] == 1 and again["duplicate_metadata_rows"] == 0

    latest = {r["id"]: r for r in read_parts(out / "metadata")}  # the view: each id once, its newest revision
    assert {i: r["revision"] for i, r in latest.items()} == {"r0": 0, "r1": 1, "r2": 1, "r3": 0}
    assert latest["r1"]["text"] == "Row 1 now says something else."
    assert latest["r1"]["audio_path"].endswith("r1/r1.flac") and (out / latest["r1"]["audio_path"]).exists()
    past = {r["id"]: r for r in read_parts(out / HISTORY / METADATA)}  # the superseded records, with their audio
    assert sorted(past) == ["r1", "r2"] and all(r["revision"] == 0 for r in past.values())
    for i, audio in old_audio.items():  # nothing was written over: the old bytes are all still there
        assert (out / (past.get(i) or latest[i])["audio_path"]).read_bytes() == audio
    assert [e["id"] for e in read_parts(out / HISTORY / "errors")] == ["bad"]  # retried: its old error kept

    changed = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={"text_temp": 0.5})})
    assert run(changed, progress=False, redo=None)["resume"]["redone_changed"] == 5  # every row: new settings
    assert run(changed, progress=False)["this_run"]["rows"] == 0  # and then nothing


def test_the_plan_counts_only_rows_the_actors_will_see(tiny_weights, tmp_path):
    manifest = write_manifest(tmp_path / "m.parquet", GOOD + BAD)
    prep = prepare(validate_config(config_dict(manifest, tmp_path / "out", tiny_weights, actors=2)))
    assert prep.todo == len(GOOD) + 2  # not the duplicated or null ids: they are manifest errors
    assert prep.window() == 1 and len(prep.manifest_errors) == 3  # 5 rows: several windows per actor


def test_plans_that_would_wait_forever_fail_fast(ray_local, caplog):
    base = {"input": {"path": "m"}, "output": {"path": "o"}, "model": {"weights": "w"}}
    hog = validate_config({**base, "compute": {"actors": 2, "cpus_per_actor": 2}})
    with pytest.raises(
        ValueError,
        match=r"= 4.25 CPUs leaves less than 0.35 for reading and finishing on this "
        r"4-CPU cluster; lower compute.cpus_per_actor",
    ):
        check_resources(hog, strict=True)
    greedy = validate_config({**base, "compute": {"actors": 3, "gpus_per_actor": 1, "cpus_per_actor": 0.5}})
    with pytest.raises(ValueError, match="3 GPUs but the cluster has 2"):
        check_resources(greedy, strict=True)
    with caplog.at_level("WARNING", logger="pipeline.batch.run"):
        check_resources(greedy, strict=False)  # a connected cluster may autoscale
    assert "3 GPUs" in caplog.text
    check_resources(
        validate_config({**base, "compute": {"actors": 2, "gpus_per_actor": 1, "cpus_per_actor": 1}}), strict=True
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipeline.batch.run"):  # a pool may start smaller than its max
        check_resources(validate_config({**base, "compute": {"actors": [1, 3], "gpus_per_actor": 1}}), strict=True)
    assert "allows 3 actors but 2 GPUs fit 2" in caplog.text
    typed = validate_config({**base, "compute": {"accelerator_type": "H100", "cpus_per_actor": 0.5}})
    with pytest.raises(ValueError, match="compute.accelerator_type 'H100' is on no node"):
        check_resources(typed, strict=True)


def test_resume_after_a_kill_loses_nothing_and_duplicates_nothing(ray_local, tiny_weights, tmp_path):
    rows = [
        {"id": f"row{i:02d}", "text": f"Row number {i} says a few words.", "voice": None, "seed": i, "chapter": i}
        for i in range(20)
    ]
    manifest = write_manifest(tmp_path / "m.parquet", rows)
    out = tmp_path / "out"
    cfg_dict = config_dict(manifest, out, tiny_weights, window_rows=1)
    # Rows long enough that the engine is still busy when the finish actors commit the first one.
    cfg_dict["generation"] = {"max_duration": 4.0}
    killed_with = kill_after_first_commit(cfg_dict, out)
    assert 0 < killed_with < len(rows), "the run must be killed part-way for this test to mean anything"
    left = json.loads((out / "summary.json").read_text())
    assert left["state"] == "running" and left["accounted"] is None  # never a stale "accounted: true"

    summary = run(validate_config(cfg_dict), progress=False)
    meta = read_parts(out / "metadata")
    ids = [r["id"] for r in meta]
    assert sorted(ids) == [r["id"] for r in rows]  # nothing lost, nothing twice
    assert summary["accounted"] and summary["ok"] == len(rows) and summary["errors"] == 0
    assert summary["this_run"]["skipped_already_done"] >= killed_with
    assert summary["this_run"]["rows"] == len(rows) - summary["this_run"]["skipped_already_done"]
    assert {r["audio_path"] for r in meta} <= {p.relative_to(out).as_posix() for p in (out / "audio").rglob("*")}
    for r in meta:  # an orphan of the killed run is never overwritten: the row's audio went beside it
        name = Path(r["audio_path"]).name
        assert name == f"{r['id']}.flac" or name.startswith(f"{r['id']}-")


def kill_after_first_commit(cfg_dict: dict, out: Path, timeout_s: float = 180.0) -> int:
    """Run the pipeline in a child process (its own local Ray) and SIGKILL its process group once
    the first metadata part is committed (in the journal); returns how many rows were committed by then."""
    code = (
        "import json, sys; from pipeline.config import validate_config; from pipeline.batch.run import run; "
        "run(validate_config(json.loads(sys.argv[1])), progress=False)"
    )
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)
    log = out.parent / "child.log"  # a file, not a pipe: a full pipe would block the child
    with open(log, "wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(cfg_dict)],
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout_s
    try:
        while not list((out / journal(METADATA)).glob("part-*.parquet")):
            assert child.poll() is None, f"child ended early: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "no metadata part committed in time"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the child's whole session: driver, raylet, actors
        child.wait()
    return len(read_parts(out / journal(METADATA)))


def test_the_processor_adds_audio_and_metadata_columns_without_writing(ray_local, tiny_weights, tmp_path):
    import ray

    from pipeline.batch.processor import build_processor

    cfg = validate_config(config_dict(tmp_path / "m.parquet", tmp_path / "never", tiny_weights))
    rows = [{"id": f"p{i}", "text": f"Processor row {i} speaks.", "chapter": i} for i in range(3)]
    rows.append({"id": "blank", "text": " ", "chapter": 9})
    ds = build_processor(cfg)(ray.data.from_items(rows))
    out = {r["id"]: r for r in ds.take_all()}
    assert set(out) == {"p0", "p1", "p2", "blank"}
    for i in range(3):
        row = out[f"p{i}"]
        assert row["ok"] and row["chapter"] == i and row["node_id"] and row["n_chunks"] == 1
        assert len(sf.read(__import__("io").BytesIO(row["audio"]))[0]) == pytest.approx(
            row["duration_s"] * 24_000, abs=1
        )
    assert not out["blank"]["ok"] and out["blank"]["error_stage"] == "validate"
    assert not (tmp_path / "never").exists()  # the processor commits nothing


def test_noise_from_random_weights_is_flagged_or_errored_by_the_speech_check_and_redone_on_request(
        ray_local, tiny_weights, tmp_path):  # fmt: skip
    rows = [
        {"id": f"n{i}", "text": f"Sentence number {i} is spoken here.", "voice": None, "seed": i, "chapter": i}
        for i in range(3)
    ]
    manifest = write_manifest(tmp_path / "m.parquet", rows)
    data = config_dict(manifest, tmp_path / "flag", tiny_weights)
    data["quality"] = {"speech": {"backend": "pocketsphinx", "max_wer": 0.5}, "max_retries": 1, "on_fail": "flag"}
    cfg = validate_config(data)
    flagged = run(cfg, progress=False)
    assert flagged["accounted"] and flagged["ok"] == 3 and flagged["this_run"]["flagged"] == 3
    meta = read_parts(tmp_path / "flag" / "metadata")
    for row in meta:  # every chunk was listened to, regenerated once, and its measures kept
        assert row["flagged"] is True
        for c in row["chunks"]:
            measures = dict(c["measures"])
            assert c["attempts"] == 2 and "wer" in c["failed"] and measures["wer"] > 0.5
            assert c["transcript"] is not None

    again = run(cfg, progress=False, redo="flagged")  # `barkpipe run CONFIG --redo flagged`
    assert again["resume"]["redone_chosen"] == 3 and again["accounted"] and again["duplicate_metadata_rows"] == 0
    assert [r["revision"] for r in read_parts(tmp_path / "flag" / "metadata")] == [1, 1, 1]
    assert [r["revision"] for r in read_parts(tmp_path / "flag" / HISTORY / METADATA)] == [0, 0, 0]
    from pipeline.book import read_chapters
    from pipeline.review.listing import Choice, list_rows
    from pipeline.review.survey import survey
    from pipeline.storage import Store

    store = Store.open(str(tmp_path / "flag"))
    chapters = read_chapters(store).chapters  # the book and the review page see each row once, its newest take
    assert [c.id for c in chapters] == ["n0", "n1", "n2"] and all("/r1/" in c.audio_path for c in chapters)
    assert sorted(r.id for r in list_rows(store, survey(store), Choice(only="all")).rows) == ["n0", "n1", "n2"]

    data["output"]["path"] = str(tmp_path / "error")
    data["quality"]["on_fail"] = "error"
    errored = run(validate_config(data), progress=False)
    assert errored["accounted"] and errored["ok"] == 0 and errored["errors"] == 3
    errors = read_parts(tmp_path / "error" / "errors")
    assert {e["stage"] for e in errors} == {"quality"} and all("wer" in e["error"] for e in errors)
