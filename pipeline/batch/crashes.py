"""Poison rows: a window whose engine worker died is retried row by row, and a row that kills it again is an error.

A row that ends its process (a segfault in a kernel, the OOM killer, a device fault, the watchdog
ending a stalled call) cannot be caught as an exception. Ray restarts the actor and re-runs the
same window on it (compute.max_task_retries), so the stage leaves a note in the output before it
starts a window and removes it when the window is done. Finding its own note on arrival means the
previous attempt died: it then generates the window one row at a time, with a note per row, and a
row whose note is already there (it was in flight when a worker died a second time) becomes that
row's error. The rest of the window, and the run, go on.

A frozen actor (SIGSTOP, a hung driver call that stops every thread) ends nothing, so nothing
retries it. Each engine actor therefore writes a heartbeat note from a thread of its own, from the
moment it starts, idle or not (frozen between two windows it still holds the next one, queued by
Ray); the driver's `FrozenActorBreaker` kills an actor whose beat count has not moved for
compute.frozen_after_s (timed by the driver, and only while the driver itself can read the
storage, so an outage that stops every heartbeat kills nobody). Ray restarts it and retries the
window, which the notes above then take row by row. An actor that Ray already ended (scaled down,
or the pool of an earlier attempt) only has its note removed, and at the end of a run the driver
ends the actors it heard from before it removes their notes, so no late beat outlives the run.

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
    """An engine actor's beat: a counter written every `every_s` from a daemon thread, for as long
    as the process runs (a frozen process stops every thread, this one too)."""

    ledger: CrashLedger
    actor_id: str
    every_s: float
    beats: int = 0

    def start(self) -> Heartbeat:
        threading.Thread(target=self._loop, name="barkpipe-heartbeat", daemon=True).start()
        return self

    def beat(self) -> None:
        self.beats += 1
        body = {"actor_id": self.actor_id, "beats": self.beats, "at": time.time()}
        self.ledger.store.write(heartbeat_key(self.actor_id), json.dumps(body).encode())

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # storage down: the breaker does not count time while it cannot read either
                log.warning("heartbeat not written (%s: %s)", type(exc).__name__, exc)
            time.sleep(self.every_s)


@dataclass
class FrozenActorBreaker:
    """Driver side: kills (so Ray restarts) every actor whose heartbeat stood still for frozen_after_s.

    kill(actor_id, restart) -> bool: ends an actor that Ray still counts alive, letting Ray restart
    it or not; False when Ray had ended it already. It raises when the actor cannot be ended.
    """

    ledger: CrashLedger
    frozen_after_s: float
    kill: Callable[[str, bool], bool]
    clock: Callable[[], float] = time.monotonic
    seen: dict = field(default_factory=dict)  # actor id -> (beats, driver time the count last moved)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _notes(self) -> list[dict]:
        paths = self.ledger.store.glob(f"{INFLIGHT}/alive-*.json")
        return [json.loads(self.ledger.store.read(f"{INFLIGHT}/{p.rsplit('/', 1)[1]}")) for p in paths]

    def check(self) -> list[str]:
        """One look at the heartbeats; returns the actors killed now."""
        now = self.clock()
        try:
            notes = self._notes()
        except Exception as exc:
            log.warning("heartbeats not readable (%s); not judging frozen actors until they are", exc)
            self.seen = {a: (beats, now) for a, (beats, _) in self.seen.items()}
            return []
        killed: list[str] = []
        for note in notes:
            actor, beats = str(note.get("actor_id")), note.get("beats")
            last = self.seen.get(actor)
            if last is None or last[0] != beats:
                self.seen[actor] = (beats, now)
            elif now - last[1] > self.frozen_after_s and self._end(actor, restart=True):
                log.warning("engine actor %s sent no heartbeat for %.0f s (frozen?); killed it so Ray restarts it "
                            "and retries its rows", actor, self.frozen_after_s)  # fmt: skip
                killed.append(actor)
        return killed

    def _end(self, actor: str, restart: bool) -> bool:
        """End the actor and drop its note (a restarted actor writes a fresh one); True if it was alive."""
        try:
            alive = self.kill(actor, restart)
        except Exception as exc:
            log.warning("could not end engine actor %s (%s: %s); trying again later", actor, type(exc).__name__, exc)
            self.seen[actor] = (self.seen.get(actor, (None, 0.0))[0], self.clock())
            return False
        self.seen.pop(actor, None)
        try:
            self.ledger.store.remove(heartbeat_key(actor))
        except Exception as exc:  # judged again later: the kill is then a no-op
            log.warning("heartbeat note of %s not removed (%s)", actor, exc)
        return alive

    def retire(self) -> None:
        """The run's actors are done: end those still beating, so no note is written after this."""
        try:
            actors = [n.get("actor_id") for n in self._notes()]
        except Exception as exc:
            log.warning("heartbeats not readable at the end of the run (%s)", exc)
            return
        for actor in actors:
            if actor:
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
