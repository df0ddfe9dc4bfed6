"""The guard: the call watchdog, the progress line, the frozen-actor breaker, Ray Data's own settings."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.stages import config

from pipeline.batch.guard import (
    STALL_EXIT_CODE,
    CallWatchdog,
    FrozenActorBreaker,
    ProgressLogger,
    Stall,
    data_context_settings,
    no_progress_timeout_s,
)
from pipeline.batch.monitor import Heartbeat, RunMonitor


class Recorder:
    def __init__(self):
        self.stalls: list[Stall] = []
        self.fired = threading.Event()

    def __call__(self, stall: Stall) -> None:
        self.stalls.append(stall)
        self.fired.set()


def test_a_stalled_call_is_reported_once_with_what_and_rows(caplog):
    seen = Recorder()
    dog = CallWatchdog(0.2, on_stall=seen)
    with caplog.at_level(logging.ERROR, logger="pipeline.batch.guard"):
        with dog.watch("engine.generate", rows=12):
            assert seen.fired.wait(5)
            time.sleep(0.4)  # still stuck past another deadline's worth: no second report
    assert len(seen.stalls) == 1 and dog.stalls == 1
    stall = seen.stalls[0]
    assert (stall.what, stall.rows, stall.timeout_s) == ("engine.generate", 12, 0.2) and stall.elapsed_s >= 0.2
    assert [r.getMessage() for r in caplog.records] == [stall.line()]
    assert "engine.generate on 12 row(s)" in stall.line() and "compute.call_timeout_s=0.2" in stall.line()


def test_calls_within_the_deadline_never_fire_and_the_thread_is_reused():
    seen = Recorder()
    dog = CallWatchdog(0.3, on_stall=seen)
    for _ in range(5):
        assert dog.call(time.sleep, 0.1, what="engine.generate", rows=1) is None  # 0.5 s in all, 0.1 s each
    time.sleep(0.4)  # nothing armed: an idle actor is not a stalled one
    assert seen.stalls == [] and dog._thread is not None and dog._thread.daemon
    threads = threading.active_count()
    dog.call(lambda: None)
    assert threading.active_count() == threads


def test_a_later_stall_after_good_calls_is_caught():
    seen = Recorder()
    dog = CallWatchdog(0.2, on_stall=seen)
    dog.call(time.sleep, 0.05, what="first")
    with dog.watch("second", rows=3):
        assert seen.fired.wait(5)
    assert [s.what for s in seen.stalls] == ["second"]


def test_an_exception_disarms_the_deadline():
    seen = Recorder()
    dog = CallWatchdog(0.2, on_stall=seen)
    with pytest.raises(ZeroDivisionError):
        dog.call(lambda: 1 / 0)
    time.sleep(0.4)
    assert seen.stalls == []


def test_zero_is_off_and_negative_is_a_clear_error():
    dog = CallWatchdog(0, on_stall=Recorder())
    with dog.watch("x"):
        pass
    assert not dog.enabled and dog._thread is None
    with pytest.raises(ValueError, match="compute.call_timeout_s must be >= 0"):
        CallWatchdog(-1)


def test_nested_watch_is_an_internal_error():
    dog = CallWatchdog(10, on_stall=Recorder())
    with dog.watch("outer"), pytest.raises(RuntimeError, match="outer is still running"):
        with dog.watch("inner"):
            pass


def test_the_default_on_stall_ends_the_process_with_the_stall_code():
    code = (
        "import logging, time; logging.basicConfig(); from pipeline.batch.guard import CallWatchdog\n"
        "with CallWatchdog(0.2).watch('engine.generate', rows=4):\n"
        "    time.sleep(30)\n"
        "print('not reached')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.returncode == STALL_EXIT_CODE
    assert "not reached" not in out.stdout and "engine.generate on 4 row(s)" in out.stderr


# ---- ProgressLogger ---------------------------------------------------------------------------


def test_progress_logs_while_no_rows_arrive():
    lines: list[str] = []
    with ProgressLogger(0.1, total=10, emit=lines.append) as progress:
        time.sleep(0.35)
        progress.update(3, 12.5)
        time.sleep(0.25)
    assert len(lines) >= 2  # about 6; fewer only on a very busy machine
    assert lines[0].startswith("still running: 0/10 rows, 0.0 audio-s") and lines[0].endswith("no row yet")
    assert "3/10 rows, 12.5 audio-s" in lines[-1] and re.search(r"last row \ds ago$", lines[-1])
    count = len(lines)
    time.sleep(0.25)
    assert len(lines) == count  # stopped with the block


def test_progress_line_counts_since_the_last_new_row():
    now = [100.0]
    progress = ProgressLogger(60, total=5, clock=lambda: now[0])
    progress.update(2, 4.0)
    now[0] += 30
    progress.update(2, 4.0)  # same totals: no new row
    now[0] += 45
    assert progress.line() == "still running: 2/5 rows, 4.0 audio-s, 75s elapsed, last row 75s ago"


def test_progress_off_and_bad_values():
    lines: list[str] = []
    with ProgressLogger(0, total=1, emit=lines.append) as progress:
        time.sleep(0.1)
    assert lines == [] and progress._thread is None
    with pytest.raises(ValueError, match="compute.progress_log_s must be >= 0"):
        ProgressLogger(-5)


# ---- FrozenActorBreaker -----------------------------------------------------------------------


def test_an_actor_whose_heartbeat_stands_still_is_killed_once_and_an_unreadable_monitor_kills_nobody():
    monitor = RunMonitor()
    now = [0.0]
    killed = []
    state = {"aa11": "ALIVE", "ff00": "ALIVE", "dd33": "DEAD"}

    def kill(actor, restart):
        killed.append((actor, restart))
        was_alive, state[actor] = state[actor] == "ALIVE", "RESTARTING" if restart else "DEAD"
        return was_alive

    breaker = FrozenActorBreaker(monitor, 60.0, kill=kill, clock=lambda: now[0])
    alive, frozen, gone = (Heartbeat(monitor, a, 12.0) for a in ("aa11", "ff00", "dd33"))
    alive.beat(), frozen.beat(), gone.beat()  # no thread started: beats by hand; "dd33" was scaled down
    for _ in range(4):  # 0-60 s: "aa11" beats every 20 s, "ff00" stopped (SIGSTOP freezes all its threads)
        assert breaker.check() == []
        now[0] += 20.0
        alive.beat()
    assert breaker.check() == ["ff00"]  # 80 s without a beat; "dd33" was gone already: not reported killed
    assert sorted(killed) == [("dd33", True), ("ff00", True)]
    assert list(monitor.beats()) == ["aa11"]  # the ended actors' counts went with them
    for _ in range(5):
        now[0] += 20.0
        alive.beat()
        assert breaker.check() == [] and len(killed) == 2  # killed once
    Heartbeat(monitor, "ff00", 12.0).beat()  # Ray restarts an actor under the same id, counting from 1
    assert breaker.check() == []
    for _ in range(4):
        now[0] += 20.0
        alive.beat()
        breaker.check()
    assert killed[-1] == ("ff00", True)  # frozen again: judged again

    quiet = FrozenActorBreaker(monitor, 60.0, kill=lambda a, r: pytest.fail(f"{a} killed while unreadable"),
                               clock=lambda: now[0])  # fmt: skip
    quiet.check()
    readable = monitor.beats

    def unreachable():
        raise TimeoutError("the monitor did not answer")

    monitor.beats = unreachable  # type: ignore[method-assign]
    now[0] += 500.0  # a long time without an answer: the driver cannot tell a frozen actor from a slow monitor
    assert quiet.check() == []
    monitor.beats = readable  # type: ignore[method-assign]
    alive.beat()
    assert quiet.check() == []  # the clock for each actor restarted when reading came back

    breaker.retire()  # the run is over: actors the monitor heard from are ended for good
    assert killed[-1] == ("aa11", False) and monitor.beats() == {}


def test_a_failed_kill_is_tried_again_a_deadline_later():
    monitor = RunMonitor()
    now, tries = [0.0], []

    def kill(actor, restart):
        tries.append(now[0])
        if len(tries) == 1:
            raise RuntimeError("GCS busy")
        return True

    breaker = FrozenActorBreaker(monitor, 60.0, kill=kill, clock=lambda: now[0])
    Heartbeat(monitor, "ff00", 12.0).beat()
    for _ in range(12):
        breaker.check()
        now[0] += 15.0
    assert tries == [75.0, 150.0]  # the first try failed: the count stayed and its clock started again
    assert monitor.beats() == {}


def test_a_heartbeat_thread_beats_until_stopped():
    monitor = RunMonitor()
    beat = Heartbeat(monitor, "aa11", 0.02).start()
    deadline = time.monotonic() + 5
    while monitor.beats().get("aa11", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    beat.stop()
    time.sleep(0.1)
    count = monitor.beats()["aa11"]
    time.sleep(0.1)
    assert count >= 3 and monitor.beats()["aa11"] == count


# ---- Ray Data's own settings ------------------------------------------------------------------


def test_ray_data_replaces_actors_dying_at_start_and_times_out_only_after_our_guards():
    from ray.data import DataContext

    c = config(compute={"call_timeout_s": 100, "start_timeout_s": 50, "frozen_after_s": 30, "max_restarts": 3}).compute
    ctx = DataContext()
    data_context_settings(ctx, c)
    assert ctx.max_consecutive_actor_init_deaths == 3
    # a stalled call, the restart that loads the model again and the retried call all fit before Ray gives up
    assert ctx.execution_no_progress_timeout_s == no_progress_timeout_s(c) == 2 * 100 + 50 + 30
    assert ctx.max_errored_blocks == 0 and ctx.actor_task_retry_on_errors is False  # never drop or redo rows
    off = config(compute={"call_timeout_s": 0}).compute
    assert no_progress_timeout_s(off) == -1  # no deadline on a call: none on the run either
