"""What keeps a run going when an actor crashes, stalls or freezes.

Ray Data's own settings where they cover the case, and the three things Ray lacks.

From Ray 2.60's DataContext (`data_context_settings`), what truly covers our cases:
- `max_consecutive_actor_init_deaths`: an engine actor whose process dies while it loads the model
  (the OOM killer, its node lost) is replaced, up to compute.max_restarts times in a row.
- `execution_no_progress_timeout_s`: a run where nothing moves for longer than our own guards
  could take to notice and retry (a stalled call, a restart, the retry itself) fails, and a rerun
  resumes; the watchdog and the breaker below always act first.
What does not, and stays off: `actor_init_retry_on_errors` (a model that fails to load fails again;
storage calls already retry for output.retry_s), `retried_map_errors` / `actor_task_retry_on_errors`
(a row's error is an error row, and a device error ends the process, where Ray's restart covers it),
`max_errored_blocks` (it drops the block's rows: "nothing lost" would not hold).

What Ray lacks, kept here:
- a per-call timeout (`CallWatchdog`): a call frozen inside a CUDA kernel, a driver or an NFS read
  never returns to the interpreter, so neither signal.alarm nor an exception reaches it; a daemon
  timer thread still runs, and os._exit ends the process so Ray restarts the actor
  (compute.max_restarts) and retries its window (compute.max_task_retries);
- the poison-row ledger and the frozen-actor breaker (monitor.py, `FrozenActorBreaker`);
- `max_restarts` / `max_task_retries` in ray_remote_args (`retry_args`), which Ray 2.60 flags as
  deprecated with no replacement named yet: they are still what bounds an actor's restarts.
Plus the "still running" line every compute.progress_log_s (`ProgressLogger`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.batch.monitor import BEATS_PER_DEADLINE, call
from pipeline.config import ComputeConfig

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
            for batch in result_tables(ds):
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


@dataclass
class FrozenActorBreaker:
    """Driver side: kills (so Ray restarts) every actor whose beat count stood still for frozen_after_s.

    monitor: the run's RunMonitor (its handle). kill(actor_id, restart) -> bool: ends an actor that
    Ray still counts alive, letting Ray restart it or not; False when Ray had ended it already. It
    raises when the actor cannot be ended. Time is the driver's own, counted only while it can read
    the monitor, so a monitor that does not answer kills nobody.
    """

    monitor: Any
    frozen_after_s: float
    kill: Callable[[str, bool], bool]
    clock: Callable[[], float] = time.monotonic
    seen: dict = field(default_factory=dict)  # actor id -> (beats, driver time the count last moved)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _beats(self) -> dict[str, int]:
        return call(self.monitor, "beats", timeout_s=self.frozen_after_s / BEATS_PER_DEADLINE)

    def check(self) -> list[str]:
        """One look at the beats; returns the actors killed now."""
        now = self.clock()
        try:
            beats = self._beats()
        except Exception as exc:
            log.warning("heartbeats not readable (%s); not judging frozen actors until they are", exc)
            self.seen = {a: (count, now) for a, (count, _) in self.seen.items()}
            return []
        killed: list[str] = []
        for actor, count in beats.items():
            last = self.seen.get(actor)
            if last is None or last[0] != count:
                self.seen[actor] = (count, now)
            elif now - last[1] > self.frozen_after_s and self._end(actor, restart=True):
                log.warning("engine actor %s sent no heartbeat for %.0f s (frozen?); killed it so Ray restarts it "
                            "and retries its rows", actor, self.frozen_after_s)  # fmt: skip
                killed.append(actor)
        return killed

    def _end(self, actor: str, restart: bool) -> bool:
        """End the actor and drop its count (a restarted actor beats afresh); True if it was alive."""
        try:
            alive = self.kill(actor, restart)
        except Exception as exc:
            log.warning("could not end engine actor %s (%s: %s); trying again later", actor, type(exc).__name__, exc)
            self.seen[actor] = (self.seen.get(actor, (None, 0.0))[0], self.clock())
            return False
        self.seen.pop(actor, None)
        try:
            call(self.monitor, "forget", actor)
        except Exception as exc:  # judged again later: the kill is then a no-op
            log.warning("heartbeat of %s not forgotten (%s)", actor, exc)
        return alive

    def retire(self) -> None:
        """The run's actors are done: end those the monitor heard from, so none outlives the run."""
        try:
            actors = list(self._beats())
        except Exception as exc:
            log.warning("heartbeats not readable at the end of the run (%s)", exc)
            return
        for actor in actors:
            self._end(actor, restart=False)

    def start(self) -> FrozenActorBreaker:
        def loop() -> None:
            while not self._stop.wait(self.frozen_after_s / BEATS_PER_DEADLINE):
                self.check()

        threading.Thread(target=loop, name="barkpipe-frozen-actors", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def __enter__(self) -> FrozenActorBreaker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def retry_args(c: ComputeConfig) -> dict:
    """The stages' actor retries. Ray's actor defaults (-1: restart and retry forever) turn one crashing
    row into a run that never ends; Ray 2.60 names no replacement for these ray_remote_args yet."""
    return {"max_restarts": c.max_restarts, "max_task_retries": c.max_task_retries}


@contextmanager
def quiet_remote_args() -> Iterator[None]:
    """Ray 2.60 flags max_restarts/max_task_retries/max_retries as deprecated "ray_remote_args" with no
    named replacement yet; they are still what bounds retries (retry_args), so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        yield


def no_progress_timeout_s(c: ComputeConfig) -> float:
    """Ray's execution_no_progress_timeout_s: longer than a stalled call, the actor's restart (model
    load) and the retried call together, plus the breaker's deadline; -1 (off) when calls have none."""
    if not c.call_timeout_s:
        return -1
    return 2 * c.call_timeout_s + c.start_timeout_s + c.frozen_after_s


def data_context_settings(ctx, c: ComputeConfig) -> None:
    """Set what Ray Data does itself on the DataContext (see the module docstring), before the dataset is made."""
    ctx.max_consecutive_actor_init_deaths = c.max_restarts
    ctx.execution_no_progress_timeout_s = no_progress_timeout_s(c)
