"""A row that kills its engine worker: the window is retried row by row on a fresh actor, and the
row that kills it again becomes that row's error while the rest of the window is made."""

from __future__ import annotations

import pyarrow as pa
import pytest
from support.stages import FakeEngine, batch, config, engine_stage

from pipeline.batch.crashes import CRASH_STAGE, INFLIGHT, CrashLedger
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


def attempt(cfg, ledger: dict, engine=None):
    """One actor (a fresh EngineStage) running the window to its end, or dying on the way."""
    stage = engine_stage(cfg, engine or PoisonEngine(), ledger=ledger)
    return pa.concat_tables(list(stage(prepared(cfg))))


def test_a_row_that_kills_its_worker_twice_is_an_error_and_the_rest_is_made(tmp_path):
    cfg = config()
    ledger = {"url": str(tmp_path)}
    with pytest.raises(WorkerDied):  # the first actor dies with the whole window in flight
        attempt(cfg, ledger)
    with pytest.raises(WorkerDied):  # the retry goes row by row: "a" is made, "p" kills this actor too
        attempt(cfg, ledger)
    out = attempt(cfg, ledger)  # the third actor skips "p" and makes the others
    by_id = {r["id"]: r for r in out.select(["id", "error_stage", "error", "pcm"]).to_pylist()}
    assert by_id["p"]["error_stage"] == CRASH_STAGE and "ended its engine worker twice" in by_id["p"]["error"]
    assert by_id["a"]["error"] is None and by_id["b"]["error"] is None and by_id["b"]["pcm"]
    assert not list((tmp_path / INFLIGHT).glob("*"))  # a finished window leaves no notes behind


def test_a_window_that_died_once_for_another_reason_is_made_in_full(tmp_path):
    cfg = config()
    ledger = {"url": str(tmp_path)}

    class DiesOnce(FakeEngine):
        died = False

        def generate(self, requests, batch_size=None, progress=None):
            if not DiesOnce.died:
                DiesOnce.died = True
                raise WorkerDied("the node went away")
            return super().generate(requests, batch_size, progress)

    with pytest.raises(WorkerDied):
        attempt(cfg, ledger, DiesOnce())
    out = attempt(cfg, ledger, DiesOnce())
    assert out["error"].to_pylist() == [None, None, None]  # "p" is harmless to this engine: nobody is blamed


def test_a_window_that_finishes_writes_and_removes_one_note(tmp_path):
    cfg = config()
    seen = []

    class Watching(FakeEngine):
        def generate(self, requests, batch_size=None, progress=None):
            seen.append(sorted(p.name for p in (tmp_path / INFLIGHT).glob("*")))
            return super().generate(requests, batch_size, progress)

    attempt(cfg, {"url": str(tmp_path)}, Watching())
    assert seen and all(len(names) == 1 and names[0].startswith("window-") for names in seen)
    assert not list((tmp_path / INFLIGHT).glob("*"))
    CrashLedger.open(str(tmp_path)).clear_all()  # nothing there: still fine


def test_without_a_ledger_a_device_error_still_propagates():
    cfg = config()
    stage = engine_stage(cfg, FakeEngine())
    with pytest.raises(RuntimeError, match="CUDA error"):
        list(stage(PrepareStage("w", cfg.generation, cfg.segment)(batch([("c", "This says CUDA.")]))))


@pytest.mark.slow
def test_on_ray_a_row_that_kills_its_actor_is_an_error_and_the_run_goes_on(tmp_path):
    """The real thing: a local Ray run whose engine actor process dies on one row (twice)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    repo = Path(__file__).resolve().parents[2]
    rows = [("r0", "The first row."), ("poison", "This row is POISON."), ("r2", "The third row."),
            ("r3", "The fourth row.")]
    pq.write_table(batch(rows), tmp_path / "m.parquet")
    (tmp_path / "w").mkdir()  # the stand-in engine reads no weights
    cfg = {"input": {"path": str(tmp_path / "m.parquet")}, "output": {"path": str(tmp_path / "out")},
           "model": {"weights": str(tmp_path / "w"), "device": "cpu"},
           "compute": {"actors": 1, "cpus_per_actor": 0.5, "window_rows": 4, "batch_size": 4,
                       "max_restarts": 2, "max_task_retries": 2}}
    code = ("import json, sys; from pipeline.config import validate_config; "
            "from pipeline.batch.run import run; from support.stages import KillingEngine; "
            "print('SUMMARY ' + json.dumps(run(validate_config(json.loads(sys.argv[1])), progress=False, "
            "engine_factory=KillingEngine)))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(repo / "tests")]))
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.rsplit("SUMMARY ", 1)[1])
    assert summary["accounted"] and summary["ok"] == 3 and summary["errors"] == 1
    errors = pq.read_table(next((tmp_path / "out" / "errors").glob("part-*.parquet"))).to_pylist()
    assert [(e["id"], e["stage"]) for e in errors] == [("poison", CRASH_STAGE)]
    assert not list((tmp_path / "out" / INFLIGHT).glob("*"))


def test_an_actor_whose_heartbeat_stands_still_is_killed_once_and_an_outage_kills_nobody(tmp_path):
    from pipeline.batch.crashes import FrozenActorBreaker, Heartbeat

    ledger = CrashLedger.open(str(tmp_path))
    now = [0.0]
    killed = []
    state = {"aa11": "ALIVE", "ff00": "ALIVE", "dd33": "DEAD"}

    def kill(actor, restart):
        killed.append((actor, restart))
        was_alive, state[actor] = state[actor] == "ALIVE", "RESTARTING" if restart else "DEAD"
        return was_alive

    breaker = FrozenActorBreaker(ledger, 60.0, kill=kill, clock=lambda: now[0])
    alive, frozen, gone = (Heartbeat(ledger, a, 12.0) for a in ("aa11", "ff00", "dd33"))
    alive.beat(), frozen.beat(), gone.beat()  # no thread started: beats by hand; "dd33" was scaled down
    for _ in range(4):  # 0-60 s: "aa11" beats every 20 s, "ff00" stopped (SIGSTOP freezes all its threads)
        assert breaker.check() == []
        now[0] += 20.0
        alive.beat()
    assert breaker.check() == ["ff00"]  # 80 s without a beat; "dd33" was gone already: not reported killed
    assert sorted(killed) == [("dd33", True), ("ff00", True)]
    assert sorted(p.name for p in (tmp_path / INFLIGHT).glob("alive-*")) == ["alive-aa11.json"]
    for _ in range(5):
        now[0] += 20.0
        alive.beat()
        assert breaker.check() == [] and len(killed) == 2  # killed once: its note went with it
    restarted = Heartbeat(ledger, "ff00", 12.0)  # Ray restarts an actor under the same id, counting from 1
    restarted.beat()
    assert breaker.check() == []
    for _ in range(4):
        now[0] += 20.0
        alive.beat()
        breaker.check()
    assert killed[-1] == ("ff00", True)  # frozen again: judged again

    quiet = FrozenActorBreaker(ledger, 60.0, kill=lambda a, r: pytest.fail(f"{a} killed during an outage"),
                               clock=lambda: now[0])
    quiet.check()
    broken = ledger.store.read

    def outage(rel):
        raise OSError("storage unreachable")

    ledger.store.read = outage
    now[0] += 500.0  # a long outage: no heartbeat moves, but the driver cannot read them either
    assert quiet.check() == []
    ledger.store.read = broken
    alive.beat()
    assert quiet.check() == []  # the clock for each actor restarted when reading came back

    breaker.retire()  # the run is over: actors still beating are ended for good, their notes removed
    assert killed[-1] == ("aa11", False) and not list((tmp_path / INFLIGHT).glob("alive-*"))


def test_a_failed_kill_is_tried_again_a_deadline_later(tmp_path):
    from pipeline.batch.crashes import FrozenActorBreaker, Heartbeat

    ledger = CrashLedger.open(str(tmp_path))
    now, tries = [0.0], []

    def kill(actor, restart):
        tries.append(now[0])
        if len(tries) == 1:
            raise RuntimeError("GCS busy")
        return True

    breaker = FrozenActorBreaker(ledger, 60.0, kill=kill, clock=lambda: now[0])
    Heartbeat(ledger, "ff00", 12.0).beat()
    for _ in range(12):
        breaker.check()
        now[0] += 15.0
    assert tries == [75.0, 150.0]  # the first try failed: the note stayed and its clock started again
    assert not list((tmp_path / INFLIGHT).glob("alive-*"))
