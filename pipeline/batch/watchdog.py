"""Deadlines: a watchdog that ends an engine actor stuck in one call, and a progress line every minute.

Why a thread and os._exit rather than an exception: a call frozen inside a CUDA kernel, a driver
or an NFS read never returns to the interpreter, so neither signal.alarm (main thread only, and
handled only between bytecodes) nor a raised exception can reach it. A daemon timer thread still
runs, and os._exit ends the whole process at once. Ray sees the actor die unexpectedly, restarts
it (compute.max_restarts) and re-runs its in-flight task on the new actor
(compute.max_task_retries), so the stalled rows are retried rather than lost.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)
# EX_TEMPFAIL from sysexits.h: "try again later", which is what Ray does with a dead actor's task.
STALL_EXIT_CODE = 75
DEFAULT_CALL_TIMEOUT_S = 1800.0  # compute.call_timeout_s' default: far above any sane engine call
DEFAULT_PROGRESS_LOG_S = 60.0  # compute.progress_log_s' default


@dataclass(frozen=True)
class Stall:
    """A call that outlived its deadline."""

    what: str  # e.g. "engine.generate"
    rows: int  # rows (or chunks) the call was working on
    elapsed_s: float
    timeout_s: float

    def line(self) -> str:
        return (
            f"watchdog: {self.what} on {self.rows} row(s) has run {self.elapsed_s:.0f} s, past "
            f"compute.call_timeout_s={self.timeout_s:g}; ending this actor (exit {STALL_EXIT_CODE}) so Ray "
            "restarts it and retries its rows"
        )


def exit_process(stall: Stall) -> None:
    """The default on_stall: flush the logs, then end the process (see the module docstring)."""
    end_process()


def end_process(code: int = STALL_EXIT_CODE) -> None:
    """Flush the logs and end this process at once, so Ray restarts the actor and retries its task."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


class CallWatchdog:
    """Arms a deadline around each call; on_stall(Stall) runs once if a call passes it.

    One daemon thread per watchdog, reused across calls; timeout_s=0 turns it off.
        dog = CallWatchdog(cfg.compute.call_timeout_s)
        with dog.watch("engine.generate", rows=len(requests)):
            results = engine.generate(requests)
    """

    def __init__(self, timeout_s: float = DEFAULT_CALL_TIMEOUT_S, on_stall: Callable[[Stall], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        if timeout_s < 0:
            raise ValueError(f"compute.call_timeout_s must be >= 0 (0 = off), got {timeout_s}")
        self.timeout_s = timeout_s
        self.on_stall = on_stall or exit_process
        self.clock = clock
        self._cond = threading.Condition()
        self._armed: tuple[int, str, int, float] | None = None  # (call number, what, rows, started)
        self._calls = 0
        self._thread: threading.Thread | None = None
        self.stalls = 0

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    @contextmanager
    def watch(self, what: str, rows: int = 0) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        with self._cond:
            if self._armed is not None:
                raise RuntimeError(f"CallWatchdog watches one call at a time; {self._armed[1]} is still running")
            self._calls += 1
            self._armed = (self._calls, what, rows, self.clock())
            self._start_thread()
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._armed = None
                self._cond.notify_all()

    def call(self, fn: Callable, *args, what: str | None = None, rows: int = 0, **kwargs):
        """fn(*args, **kwargs) under the deadline."""
        with self.watch(what or str(getattr(fn, "__qualname__", fn)), rows):
            return fn(*args, **kwargs)

    def _start_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="barkpipe-watchdog", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        fired = 0  # the call number already reported: one stall report per call
        while True:
            with self._cond:
                while self._armed is None or self._armed[0] == fired:
                    self._cond.wait()
                number, what, rows, started = self._armed
                left = started + self.timeout_s - self.clock()
                if left > 0:
                    self._cond.wait(timeout=left)
                    continue  # re-check: the call may have ended or another begun
            fired = number
            self.stalls += 1
            stall = Stall(what, rows, self.clock() - started, self.timeout_s)
            log.error(stall.line())
            self.on_stall(stall)


class ProgressLogger:
    """Logs "still running" at least every every_s, whether rows arrive or not (0 = off).

    The driver calls update() as results stream in; a daemon thread writes the line, so a run
    whose actors have all stalled still says so.
        with ProgressLogger(cfg.compute.progress_log_s, total=prep.todo) as progress:
            for batch in ds.iter_batches(...):
                totals.add(batch)
                progress.update(totals.ok + totals.errors, totals.audio_s)
    """

    def __init__(self, every_s: float = DEFAULT_PROGRESS_LOG_S, total: int = 0,
                 emit: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        if every_s < 0:
            raise ValueError(f"compute.progress_log_s must be >= 0 (0 = off), got {every_s}")
        self.every_s, self.total = every_s, total
        self.emit = emit or log.info
        self.clock = clock
        self.rows, self.audio_s = 0, 0.0
        self.started = self.last_row = clock()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def update(self, rows: int, audio_s: float) -> None:
        """Totals so far (not increments)."""
        with self._lock:
            if rows != self.rows:
                self.last_row = self.clock()
            self.rows, self.audio_s = rows, audio_s

    def line(self) -> str:
        with self._lock:
            now = self.clock()
            since = "no row yet" if self.rows == 0 else f"last row {now - self.last_row:.0f}s ago"
            return (
                f"still running: {self.rows}/{self.total} rows, {self.audio_s:.1f} audio-s, "
                f"{now - self.started:.0f}s elapsed, {since}"
            )

    def start(self) -> ProgressLogger:
        if self.every_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="barkpipe-progress", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.emit(self.line())

    def __enter__(self) -> ProgressLogger:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
