"""Deadlines: the engine-call watchdog and the every-minute progress line."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.batch.watchdog import STALL_EXIT_CODE, CallWatchdog, ProgressLogger, Stall


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
    with caplog.at_level(logging.ERROR, logger="pipeline.batch.watchdog"):
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
    code = ("import logging, time; logging.basicConfig(); from pipeline.batch.watchdog import CallWatchdog\n"
            "with CallWatchdog(0.2).watch('engine.generate', rows=4):\n"
            "    time.sleep(30)\n"
            "print('not reached')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[3])
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
