"""Poison rows: a window whose engine worker died is retried row by row, and a row that kills it again is an error.

A row that ends its process (a segfault in a kernel, the OOM killer, a device fault, the watchdog
ending a stalled call) cannot be caught as an exception. Ray restarts the actor and re-runs the
same window on it (compute.max_task_retries), so the stage leaves a note in the output before it
starts a window and removes it when the window is done. Finding its own note on arrival means the
previous attempt died: it then generates the window one row at a time, with a note per row, and a
row whose note is already there (it was in flight when a worker died a second time) becomes that
row's error. The rest of the window, and the run, go on.

A frozen actor (SIGSTOP, a hung driver call that stops every thread) ends nothing, so nothing
retries it. Each engine actor therefore writes a heartbeat note from a thread of its own; the
driver's `FrozenActorBreaker` kills an actor whose beat count has not moved for
compute.frozen_after_s (timed by the driver, and only while the driver itself can read the
storage, so an outage that stops every heartbeat kills nobody). Ray restarts it and retries the
window, which the notes above then take row by row.

Notes live under `<output>/.barkpipe-inflight/`, written by whichever node runs the retry; the run
holds the output's lease, and clears the folder when it starts, so no note outlives its run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.storage import DEFAULT_RETRY_S, Store

log = logging.getLogger(__name__)
INFLIGHT = ".barkpipe-inflight"
BEATS_PER_DEADLINE = 5  # heartbeats written per compute.frozen_after_s
CRASH_STAGE = "crash"
CRASH_MESSAGE = (
    "generating this row ended its engine worker twice (a crash, an out-of-memory kill, a device fault or a "
    "call stalled past compute.call_timeout_s); the row was skipped so the run could go on"
)


def _digest(kind: str, ids: list[str]) -> str:
    return f"{INFLIGHT}/{kind}-{hashlib.sha256(chr(10).join(ids).encode()).hexdigest()[:24]}.json"


@dataclass
class CrashLedger:
    """The in-flight notes of one output (see the module docstring)."""

    store: Store

    @classmethod
    def open(cls, url: str, storage_options: dict | None = None, retry_s: float = DEFAULT_RETRY_S) -> CrashLedger:
        return cls(Store.open(url, storage_options or {}, retry_s=retry_s))

    def window_key(self, ids: list[str]) -> str:
        return _digest("window", sorted(ids))

    def row_key(self, row_id: str) -> str:
        return _digest("row", [row_id])

    def seen(self, key: str) -> bool:
        """True when an earlier attempt left this note: it died before finishing."""
        return self.store.exists(key)

    def note(self, key: str, ids: list[str]) -> None:
        self.store.write(key, json.dumps({"in_flight": ids}).encode())

    def clear(self, key: str) -> None:
        self.store.remove(key)

    def clear_all(self) -> None:
        """Start of a run: notes of an earlier run (its driver was killed mid-window) mean nothing now."""
        self.store.remove(INFLIGHT)


def heartbeat_key(actor_id: str) -> str:
    return f"{INFLIGHT}/alive-{actor_id}.json"


@dataclass
class Heartbeat:
    """An engine actor's beat while it works on a window: a counter written every `every_s` from a
    daemon thread, and the note removed when the window is done (an idle actor holds no rows)."""

    ledger: CrashLedger
    actor_id: str
    every_s: float
    beats: int = 0
    working: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> Heartbeat:
        threading.Thread(target=self._loop, name="barkpipe-heartbeat", daemon=True).start()
        return self

    def begin(self) -> None:
        """A window starts: beat now and every every_s until end()."""
        with self._lock:
            self.working = True
        self._wake.set()

    def end(self) -> None:
        """The window is handed over: no more beats, and the note goes (under the lock, so no late beat)."""
        with self._lock:
            self.working = False
            self.ledger.clear(heartbeat_key(self.actor_id))

    def beat(self) -> None:
        with self._lock:
            if not self.working:
                return
            self.beats += 1
            body = {"actor_id": self.actor_id, "beats": self.beats, "at": time.time()}
            self.ledger.store.write(heartbeat_key(self.actor_id), json.dumps(body).encode())

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # storage down: the breaker does not count time while it cannot read either
                log.warning("heartbeat not written (%s: %s)", type(exc).__name__, exc)
            self._wake.wait(self.every_s)
            self._wake.clear()


@dataclass
class FrozenActorBreaker:
    """Driver side: kills (so Ray restarts) every actor whose heartbeat stood still for frozen_after_s.

    kill(actor_id) -> bool: ends an actor that Ray still counts alive (False when it is gone anyway).
    """

    ledger: CrashLedger
    frozen_after_s: float
    kill: Callable[[str], bool]
    clock: Callable[[], float] = time.monotonic
    seen: dict = field(default_factory=dict)  # actor id -> (beats, driver time the count last moved)
    killed: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def check(self) -> list[str]:
        """One look at the heartbeats; returns the actors killed now."""
        now = self.clock()
        try:
            paths = self.ledger.store.glob(f"{INFLIGHT}/alive-*.json")
            notes = [json.loads(self.ledger.store.read(f"{INFLIGHT}/{p.rsplit('/', 1)[1]}")) for p in paths]
        except Exception as exc:
            log.warning("heartbeats not readable (%s); not judging frozen actors until they are", exc)
            self.seen = {a: (beats, now) for a, (beats, _) in self.seen.items()}
            return []
        frozen = []
        for note in notes:
            actor, beats = note.get("actor_id"), note.get("beats")
            last = self.seen.get(actor)
            if last is None or last[0] != beats:
                self.seen[actor] = (beats, now)
            elif now - last[1] > self.frozen_after_s and actor not in self.killed:
                frozen.append(actor)
        done = []
        for actor in frozen:
            if self.kill(actor):
                log.warning("engine actor %s sent no heartbeat for %.0f s (frozen?); killed it so Ray restarts it "
                            "and retries its rows", actor, self.frozen_after_s)  # fmt: skip
                done.append(actor)
            self.killed.append(actor)
        return done

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
