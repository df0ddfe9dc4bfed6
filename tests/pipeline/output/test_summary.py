"""Accounting you can trust: a running marker in summary.json, and a verdict whose exit code means something."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from pipeline.output.read import Latest
from pipeline.output.summary import (
    ACCOUNTING_EXIT,
    RUNNING,
    new_run_id,
    read_state,
    verdict,
    write_running_summary,
)
from pipeline.storage import Store


def test_running_marker_replaces_a_final_summary(tmp_path):
    store = Store.open(str(tmp_path))
    store.write("summary.json", json.dumps({"state": "final", "accounted": True, "ok": 30}).encode())
    started = datetime(2026, 12, 2, 10, 30, tzinfo=timezone.utc)
    written = write_running_summary(store, "run-1", {"output": {"path": "out"}}, started, content_hash="sha256:c")
    on_disk = json.loads(store.read("summary.json"))
    assert on_disk == written
    assert on_disk["state"] == RUNNING and on_disk["accounted"] is None and "ok" not in on_disk
    assert on_disk["run_id"] == "run-1" and on_disk["started_at"] == "2026-12-02T10:30:00+00:00"
    assert on_disk["config"] == {"output": {"path": "out"}} and on_disk["content_hash"] == "sha256:c"
    assert read_state(store) == RUNNING


def test_read_state_of_nothing_and_of_old_summaries(tmp_path):
    store = Store.open(str(tmp_path))
    assert read_state(store) is None
    store.write("summary.json", b'{"accounted": true}')
    assert read_state(store) is None
    store.write("summary.json", b"not json")
    assert read_state(store) is None


def test_run_ids_sort_by_time_and_differ():
    early = new_run_id(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert re.fullmatch(r"20260101T000000Z-[0-9a-f]{8}", early)
    assert new_run_id() != new_run_id() and early < new_run_id()


def latest(ok=(), errors=(), duplicates=0, duplicate_ids=()):
    return Latest.of(
        ok={i: 1.0 for i in ok}, errors=list(errors), duplicate_ok=duplicates, duplicate_ids=list(duplicate_ids)
    )


def test_everything_accounted_is_exit_zero():
    view = latest(ok=["a", "b"], errors=[("c", "generate")])
    assert verdict(3, view) == (0, "accounted: 2 ok + 1 errors of 3 input rows")
    assert verdict(["a", "b", "c"], view) == (0, "accounted: 2 ok + 1 errors of 3 input rows")
    assert verdict(4, view, manifest_errors=1)[0] == 0


def test_missing_ids_are_named_and_non_zero():
    code, line = verdict(["a", "b", "c", "d"], latest(ok=["a", "old-row"], errors=[("b", "validate")]))
    assert code == ACCOUNTING_EXIT == 3
    assert line.startswith("NOT accounted: 1 ok + 1 errors of 4 input rows; 2 missing ('c', 'd')")
    assert "rerun to resume" in line
    code, line = verdict(5, latest(ok=["a"]))
    assert code == 3 and "4 missing" in line


def test_duplicates_are_non_zero_even_when_counts_match():
    code, line = verdict(["a", "b"], latest(ok=["a", "b"], duplicates=2, duplicate_ids=["a"]))
    assert code == 3 and "2 duplicate record(s) (ids 'a')" in line and "missing" not in line


def test_an_error_fixed_by_an_ok_row_counts_once():
    code, line = verdict(2, latest(ok=["a", "b"], errors=[("a", "generate")]))
    assert (code, line) == (0, "accounted: 2 ok + 0 errors of 2 input rows")


def test_more_rows_than_input_by_count_is_non_zero():
    code, line = verdict(1, latest(ok=["a", "b"]))
    assert code == 3 and "1 more than the input" in line


def test_a_failed_run_makes_its_running_marker_final_and_keeps_what_was_committed(tmp_path):
    from pipeline.output.summary import FAILED, read_state, write_failed_summary

    store = Store.open(str(tmp_path / "out"))
    write_running_summary(store, "run-1", {"output": {}}, content_hash="sha256:abc")
    latest = Latest.of(ok={"a": 1.0, "b": 2.0}, errors=[("c", "voice")])
    written = write_failed_summary(store, "run-1", 2, "output.path x: no space left on device (ENOSPC)", latest,
                                   {"temp_files": 1, "unreferenced_audio": 0})  # fmt: skip
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk == written and read_state(store) == FAILED
    assert on_disk["exit_code"] == 2 and on_disk["error"].endswith("(ENOSPC)") and on_disk["accounted"] is False
    assert on_disk["committed"] == {"ok": 2, "errors": 1} and on_disk["content_hash"] == "sha256:abc"
    assert on_disk["orphans_removed"] == {"after_failure": {"temp_files": 1, "unreferenced_audio": 0}}
