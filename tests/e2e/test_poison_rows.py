"""A row that kills its engine worker: the window is retried row by row on a fresh actor, and the
row that kills it again becomes that row's error while the rest of the window is made."""

from __future__ import annotations

import pyarrow as pa
import pytest
from support.stages import FakeEngine, batch, config, engine_stage

from pipeline.batch.monitor import CRASH_STAGE, RunMonitor
from pipeline.batch.stages.prepare import PrepareStage


class WorkerDied(BaseException):
    """Stands in for the process ending (segfault, OOM kill): no `except Exception` in the stage sees it."""


class PoisonEngine(FakeEngine):
    def generate(self, requests, batch_size=None, progress=None):
        if any("POISON" in r.text for r in requests):
            raise WorkerDied("segfault")
        return super().generate(requests, batch_size, progress)


ROWS = [("a", "A fine row."), ("p", "This row is POISON for the engine."), ("b", "Another fine row.")]


def prepared(cfg):
    return PrepareStage(cfg.model.weights, cfg.generation, cfg.segment)(batch(ROWS))


def attempt(cfg, monitor: RunMonitor, engine=None):
    """One actor (a fresh EngineStage, the run's one monitor) running the window to its end, or dying on the way."""
    stage = engine_stage(cfg, engine or PoisonEngine(), monitor=monitor)
    return pa.concat_tables(list(stage(prepared(cfg))))


def test_a_row_that_kills_its_worker_twice_is_an_error_and_the_rest_is_made():
    cfg = config()
    monitor = RunMonitor()
    with pytest.raises(WorkerDied):  # the first actor dies with the whole window in flight
        attempt(cfg, monitor)
    with pytest.raises(WorkerDied):  # the retry goes row by row: "a" is made, "p" kills this actor too
        attempt(cfg, monitor)
    out = attempt(cfg, monitor)  # the third actor skips "p" and makes the others
    by_id = {r["id"]: r for r in out.select(["id", "error_stage", "error", "pcm"]).to_pylist()}
    assert by_id["p"]["error_stage"] == CRASH_STAGE and "ended its engine worker twice" in by_id["p"]["error"]
    assert by_id["a"]["error"] is None and by_id["b"]["error"] is None and by_id["b"]["pcm"]
    assert monitor.notes() == []  # a finished window leaves no notes behind


def test_a_window_that_died_once_for_another_reason_is_made_in_full():
    cfg = config()
    monitor = RunMonitor()

    class DiesOnce(FakeEngine):
        died = False

        def generate(self, requests, batch_size=None, progress=None):
            if not DiesOnce.died:
                DiesOnce.died = True
                raise WorkerDied("the node went away")
            return super().generate(requests, batch_size, progress)

    with pytest.raises(WorkerDied):
        attempt(cfg, monitor, DiesOnce())
    out = attempt(cfg, monitor, DiesOnce())
    assert out["error"].to_pylist() == [None, None, None]  # "p" is harmless to this engine: nobody is blamed


def test_a_window_that_finishes_writes_and_removes_one_note():
    cfg = config()
    monitor, seen = RunMonitor(), []

    class Watching(FakeEngine):
        def generate(self, requests, batch_size=None, progress=None):
            seen.append(monitor.notes())
            return super().generate(requests, batch_size, progress)

    attempt(cfg, monitor, Watching())
    assert seen and all(len(names) == 1 and names[0].startswith("window-") for names in seen)
    assert monitor.notes() == [] and monitor.beats() == {}  # outside a Ray actor nothing beats


def test_without_a_monitor_a_device_error_still_propagates():
    cfg = config()
    stage = engine_stage(cfg, FakeEngine())
    with pytest.raises(RuntimeError, match="CUDA error"):
        list(stage(PrepareStage("w", cfg.generation, cfg.segment)(batch([("c", "This says CUDA.")]))))


@pytest.mark.slow
def test_on_ray_a_row_that_kills_its_actor_is_an_error_and_the_run_goes_on(tmp_path):
    """The real thing: a local Ray run whose engine actor process dies on one row (twice); the notes are
    kept by the run's monitor actor, which outlives the engine actor."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    repo = Path(__file__).resolve().parents[2]
    rows = [
        ("r0", "The first row."),
        ("poison", "This row is POISON."),
        ("r2", "The third row."),
        ("r3", "The fourth row."),
    ]
    pq.write_table(batch(rows), tmp_path / "m.parquet")
    (tmp_path / "w").mkdir()  # the stand-in engine reads no weights
    cfg = {
        "input": {"path": str(tmp_path / "m.parquet")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"weights": str(tmp_path / "w"), "device": "cpu"},
        "compute": {
            "actors": 1,
            "cpus_per_actor": 0.5,
            "window_rows": 4,
            "batch_size": 4,
            "max_restarts": 2,
            "max_task_retries": 2,
        },
    }
    code = (
        "import json, sys; from pipeline.config import validate_config; "
        "from pipeline.batch.run import run; from support.stages import KillingEngine; "
        "print('SUMMARY ' + json.dumps(run(validate_config(json.loads(sys.argv[1])), progress=False, "
        "engine_factory=KillingEngine)))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(repo / "tests")]))
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cfg)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.rsplit("SUMMARY ", 1)[1])
    assert summary["accounted"] and summary["ok"] == 3 and summary["errors"] == 1
    errors = pq.read_table(next((tmp_path / "out" / "errors").glob("view-*.parquet"))).to_pylist()
    assert [(e["id"], e["stage"]) for e in errors] == [("poison", CRASH_STAGE)]
