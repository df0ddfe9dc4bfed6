"""What `barkpipe run` guards before Ray starts: one writer per output, overwrite only of barkpipe
outputs, a running marker, and an exit code that says when the output cannot be trusted."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipeline.batch.run import run
from pipeline.cli.run import register
from pipeline.config import validate_config
from pipeline.output.layout import LEASE, MARKER
from pipeline.output.lease import OutputBusy, acquire_lease, mark_output, read_lease
from pipeline.storage import Store, UnsafeOutput

IDS = ["a", "b", "c"]


@pytest.fixture
def cfg_dict(tmp_path, tiny_weights) -> dict:
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": IDS, "text": [f"Row {i}." for i in IDS]}), manifest)
    return {
        "input": {"path": str(manifest)},
        "output": {"path": str(tmp_path / "out"), "format": "flac"},
        "model": {"weights": str(tiny_weights), "device": "cpu"},
    }


def done_output(out, ids, copies: int = 1) -> None:
    """An output whose metadata already holds ids (copies > 1: each recorded that many times)."""
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    for n in range(copies):
        rows = [{"id": i, "duration_s": 1.0, "audio_path": f"audio/{i}.flac"} for i in ids]
        pq.write_table(pa.Table.from_pylist(rows), out / "metadata" / f"part-{n}.parquet")
    mark_output(Store.open(str(out)))


def no_ray(monkeypatch):
    import pipeline.batch.run as runner

    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("nothing was left to run, yet Ray started"))


def test_a_second_run_on_a_busy_output_is_refused_before_anything_is_written(cfg_dict, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    store = Store.open(cfg_dict["output"]["path"])
    holder = acquire_lease(store, "run-A", ttl_s=600)
    with pytest.raises(OutputBusy, match="in use by run 'run-A'"):
        run(validate_config(cfg_dict), progress=False)
    assert not (tmp_path / "out" / "summary.json").exists() and not (tmp_path / "out" / "metadata").exists()
    holder.release()


def test_a_finished_run_releases_the_lease_and_marks_its_output(cfg_dict, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    out = tmp_path / "out"
    done_output(out, IDS)
    summary = run(validate_config(cfg_dict), progress=False)
    assert summary["accounted"] and summary["exit_code"] == 0 and summary["state"] == "final"
    assert read_lease(Store.open(str(out))) is None and not (out / LEASE).exists()
    assert (out / MARKER).exists()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["state"] == "final" and on_disk["run_id"] == summary["run_id"]


def test_overwrite_deletes_only_inside_a_barkpipe_output(cfg_dict, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    foreign = tmp_path / "out"
    (foreign / "audio").mkdir(parents=True)
    (foreign / "audio" / "keep-me.wav").write_bytes(b"someone else's")
    cfg_dict["output"]["overwrite"] = True
    with pytest.raises(UnsafeOutput, match="no .barkpipe-output marker"):
        run(validate_config(cfg_dict), progress=False)
    assert (foreign / "audio" / "keep-me.wav").read_bytes() == b"someone else's"
    assert read_lease(Store.open(str(foreign))) is None  # the refused run gave its lease back


def test_rows_recorded_twice_make_the_run_exit_3_with_a_line_saying_so(cfg_dict, tmp_path):
    done_output(tmp_path / "out", IDS, copies=2)  # as two overlapping runs of an older barkpipe left it
    result = cli_run(cfg_dict, tmp_path)
    assert result.exit_code == 3, result.output
    assert "NOT accounted" in result.output and "3 duplicate record(s)" in result.output
    assert "Traceback" not in result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["exit_code"] == 3


def test_a_run_that_loses_a_worker_resumes_itself_and_other_errors_end_it(cfg_dict, tmp_path, monkeypatch, caplog):
    import ray.exceptions

    import pipeline.batch.run as runner

    calls = []

    def flaky(prep, *args, **kwargs):
        calls.append(prep.todo)
        if len(calls) == 1:  # the first attempt commits one row, then loses its node
            done_output(tmp_path / "out", ["a"])
            raise ray.exceptions.ActorUnavailableError("RPC error: failed to connect", None)

    monkeypatch.setattr(runner, "execute", flaky)
    with caplog.at_level("WARNING", logger="pipeline.batch.run"):
        run(validate_config(cfg_dict), progress=False)
    assert calls == [3, 2]  # the resumed attempt asks only for what is not committed
    assert "lost a worker" in caplog.text and "resuming from what is committed (1 of 2)" in caplog.text

    def broken(prep, *args, **kwargs):
        calls.append("broken")
        raise KeyError("a bug, not a lost worker")

    monkeypatch.setattr(runner, "execute", broken)
    cfg_dict["output"]["path"] = str(tmp_path / "other")
    with pytest.raises(KeyError):
        run(validate_config(cfg_dict), progress=False)
    assert calls.count("broken") == 1


def cli_run(cfg_dict: dict, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    register(app)
    return CliRunner().invoke(app, ["run", str(path)])


def test_a_full_disk_in_a_worker_is_one_line_exit_2_and_a_failed_summary(cfg_dict, tmp_path, monkeypatch):
    import pipeline.batch.run as runner

    out = tmp_path / "out"
    line = f"output.path {out}: no space left on device (ENOSPC) while writing audio/b.flac; free space, run again"

    def fills_the_disk(prep, *args, **kwargs):
        done_output(out, ["a"])  # committed before the disk filled: it stays and counts
        (out / "audio" / ".tmp-0123456789ab-c.flac").write_bytes(b"a writer killed mid-write")
        # How Ray Data hands the driver a worker's exception: its traceback, as text.
        raise RuntimeError(f"ray::MapWorker(MapBatches(FinishStage))\npipeline.storage.OutputFault: {line}\n")

    monkeypatch.setattr(runner, "execute", fills_the_disk)
    result = cli_run(cfg_dict, tmp_path)
    assert result.exit_code == 2, result.output
    assert [x for x in result.output.splitlines() if x.startswith("error:")] == [f"error: {line}"]
    assert "Traceback" not in result.output and "bug" not in result.output
    assert not list((out / "audio").glob(".tmp-*"))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["state"], summary["exit_code"], summary["error"]) == ("failed", 2, line)
    assert summary["committed"] == {"ok": 1, "errors": 0} and summary["accounted"] is False
    assert read_lease(Store.open(str(out))) is None


def test_a_bug_also_makes_the_running_marker_final(cfg_dict, tmp_path, monkeypatch):
    import pipeline.batch.run as runner

    monkeypatch.setattr(runner, "execute", lambda *a, **k: {}["a bug"])
    with pytest.raises(KeyError):
        run(validate_config(cfg_dict), progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["state"] == "failed" and summary["exit_code"] == 1 and "KeyError" in summary["error"]


def test_orphans_of_an_earlier_attempt_go_when_the_next_run_starts(cfg_dict, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    out = tmp_path / "out"
    done_output(out, IDS)  # metadata names audio/a.flac, audio/b.flac, audio/c.flac
    for name in ["a.flac", "b.flac", "c.flac", "a-0123456789abcdef.flac", ".tmp-0123456789ab-b.flac", "x.txt"]:
        (out / "audio" / name).write_bytes(b"x")
    result = cli_run(cfg_dict, tmp_path)
    assert result.exit_code == 0, result.output
    assert "barkpipe: removed 2 orphan audio file(s) at the start" in result.output
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["a.flac", "b.flac", "c.flac", "x.txt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["orphans_removed"] == {"start": {"temp_files": 1, "unreferenced_audio": 1}}
