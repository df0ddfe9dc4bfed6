"""The run's monitor: crash notes and heartbeats of the engine actors, in memory, in one small actor.

A row that ends its process (a segfault in a kernel, the OOM killer, a device fault, the watchdog
ending a stalled call) cannot be caught as an exception. Ray restarts the actor and re-runs the
same window on it (compute.max_task_retries), so the engine stage leaves a note with the monitor
before it starts a window and removes it when the window is handed over. Finding its own note on
arrival means the previous attempt died: it then generates the window one row at a time, with a
note per row, and a row whose note is already there (it was in flight when a worker died a second
time) becomes that row's `crash` error. The rest of the window, and the run, go on.

A frozen actor (SIGSTOP, a hung driver call that stops every thread) ends nothing, so nothing
retries it. Each engine actor therefore beats from a thread of its own, from the moment it starts,
idle or not; the driver's guard.FrozenActorBreaker reads the beat counts here and kills an actor
whose count has not moved for compute.frozen_after_s.

The driver starts one monitor per execution (`run_monitor`), pinned to its own node with no CPU,
and ends it with the execution: a worker node's death never takes the notes with it, an outage of
the output's storage never touches them, and no note outlives its run.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)
BEATS_PER_DEADLINE = 5  # heartbeats sent per compute.frozen_after_s
# Calls the monitor serves at once: every actor's beat, its notes and the driver's reads, none
# queued behind another (each call is a few dict operations).
MONITOR_CONCURRENCY = 64
CRASH_STAGE = "crash"
CRASH_MESSAGE = (
    "generating this row ended its engine worker twice (a crash, an out-of-memory kill, a device fault or a "
    "call stalled past compute.call_timeout_s); the row was skipped so the run could go on"
)


class RunMonitor:
    """What the monitor actor holds: the open notes and each engine actor's beat count (also usable in-process)."""

    def __init__(self) -> None:
        self._notes: set[str] = set()
        self._beats: dict[str, int] = {}
        self._lock = threading.Lock()  # the actor serves calls from several threads (MONITOR_CONCURRENCY)

    def note(self, key: str) -> None:
        with self._lock:
            self._notes.add(key)

    def seen(self, key: str) -> bool:
        with self._lock:
            return key in self._notes

    def clear(self, key: str) -> None:
        with self._lock:
            self._notes.discard(key)

    def notes(self) -> list[str]:
        with self._lock:
            return sorted(self._notes)

    def beat(self, actor_id: str) -> int:
        with self._lock:
            self._beats[actor_id] = self._beats.get(actor_id, 0) + 1
            return self._beats[actor_id]

    def beats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._beats)

    def forget(self, actor_id: str) -> None:
        """An actor killed (a restarted one beats afresh) or gone: its count goes."""
        with self._lock:
            self._beats.pop(actor_id, None)


@contextmanager
def run_monitor() -> Iterator[Any]:
    """A RunMonitor actor on the driver's node for the duration (needs a connected Ray); yields its handle."""
    import ray  # the driver has imported it by now; this module stays importable without Ray's start-up cost
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # as above

    here = ray.get_runtime_context().get_node_id()
    handle: Any = (
        ray.remote(RunMonitor)
        .options(
            num_cpus=0,  # never competes with the stages for a CPU
            max_concurrency=MONITOR_CONCURRENCY,
            max_restarts=0,  # a monitor that lost its notes would blame nobody: the driver's node is gone anyway
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        )
        .remote()
    )
    try:
        yield handle
    finally:
        ray.kill(handle)


def call(monitor: Any, method: str, *args, timeout_s: float | None = None):
    """monitor.method(*args) on a RunMonitor, or on its actor handle (waiting for the answer)."""
    fn = getattr(monitor, method)
    if not hasattr(fn, "remote"):
        return fn(*args)
    import ray  # only an actor handle gets here, so Ray is loaded already

    return ray.get(fn.remote(*args), timeout=timeout_s)


def _digest(kind: str, ids: list[str]) -> str:
    return f"{kind}-{hashlib.sha256(chr(10).join(ids).encode()).hexdigest()[:24]}"


class CrashNotes:
    """The engine stage's side of the notes (see the module docstring): a window in full, or row by row."""

    def __init__(self, monitor: Any):
        self.monitor = monitor

    def open_window(self, ids: list[str]) -> tuple[str, bool]:
        """(the window's key, True when an earlier attempt at it died); notes the window when it did not."""
        key = _digest("window", sorted(ids))
        died = bool(call(self.monitor, "seen", key))
        if not died:
            call(self.monitor, "note", key)
        return key, died

    def row_key(self, row_id: str) -> str:
        return _digest("row", [row_id])

    def seen(self, key: str) -> bool:
        return bool(call(self.monitor, "seen", key))

    def note(self, key: str) -> None:
        call(self.monitor, "note", key)

    def clear(self, key: str) -> None:
        call(self.monitor, "clear", key)


class Heartbeat:
    """An engine actor's beat: monitor.beat(actor_id) every `every_s` from a daemon thread, for as long
    as the process runs (a frozen process stops every thread, this one too)."""

    def __init__(self, monitor: Any, actor_id: str, every_s: float):
        self.monitor, self.actor_id, self.every_s = monitor, actor_id, every_s
        self._stop = threading.Event()

    def start(self) -> Heartbeat:
        threading.Thread(target=self._loop, name="barkpipe-heartbeat", daemon=True).start()
        return self

    def beat(self) -> int:
        return int(call(self.monitor, "beat", self.actor_id, timeout_s=self.every_s * BEATS_PER_DEADLINE))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:
                from ray.exceptions import ActorDiedError  # only a Ray call raises here: Ray is loaded

                if isinstance(exc, ActorDiedError):
                    return  # the monitor ended with its execution: nobody listens any more
                log.warning("heartbeat not sent (%s: %s)", type(exc).__name__, exc)
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
