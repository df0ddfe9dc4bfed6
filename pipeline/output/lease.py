"""Who may write an output: the marker that makes it barkpipe's, and the one writer's lease, renewed while a run lives.

The marker `.barkpipe-output` is created by a run's first write; `output.overwrite` clears only a
folder that carries it (anything else may not be ours).

The lease is `<output>/.barkpipe-lease`, JSON naming its holder and when it expires. It is taken
with the Store's create-only commit (S3 `If-None-Match: *`, a local hard link), renewed by a
background thread every third of its ttl, and deleted at the end. A lease whose expiry has passed
belongs to a run that died: it is deleted and taken with another create-only put. So is one
whose holder ran on this machine and whose process is gone (a killed run is resumed at once,
not after the ttl).

What this does not guarantee: S3 (and Ceph RGW) offer no compare-and-delete here, so two runs that
find the same stale lease at the same moment can both delete it; the second delete may then remove
the lease the first just created, and both proceed. The window is the few milliseconds between
reading a stale lease and re-creating it, and only after a holder died without releasing. Each
renewal re-reads the lease and a holder that finds someone else's token sets `lost` and stops
renewing, so the overlap is noticed within ttl/3. Clocks of the machines must agree to well
within the ttl (expiry is wall-clock time).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from pipeline.output.layout import LEASE, MARKER, OWNED
from pipeline.storage import Store, UnsafeOutput

log = logging.getLogger(__name__)
POLL_S = 5.0  # how often a waiting run looks at the lease again


class OutputBusy(ValueError):
    """Another run holds the output's lease (a user-facing condition: one line, exit 2)."""


class LeaseLost(RuntimeError):
    """Our lease was taken over or deleted while we ran: stop writing."""


@dataclass
class Lease:
    """A held lease; renew() extends it, release() gives it up, `lost` says another run took it."""

    store: Store
    owner: str
    token: str
    ttl_s: float
    expires: float = 0.0
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def record(self) -> dict:
        return {
            "owner": self.owner,
            "token": self.token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "expires": self.expires,
            "expires_utc": _utc(self.expires),
            "ttl_s": self.ttl_s,
        }

    def renew(self) -> None:
        """Push the expiry ttl_s ahead; LeaseLost when the lease is no longer ours."""
        current = read_lease(self.store)
        if current is None or current.get("token") != self.token:
            self.lost = True
            holder = f"run {current.get('owner')!r}" if current else "nobody (it was deleted)"
            raise LeaseLost(f"the lease on {self.store.root!r} is now held by {holder}; this run stopped renewing")
        self.expires = time.time() + self.ttl_s
        self.store.write(LEASE, json.dumps(self.record()).encode())

    def start_renewing(self) -> Lease:
        """Renew every ttl/3 in a daemon thread until release(); a lost lease is logged and sets `lost`."""

        def loop() -> None:
            while not self._stop.wait(self.ttl_s / 3):
                try:
                    self.renew()
                except LeaseLost as exc:
                    log.error("%s", exc)
                    return
                except Exception as exc:  # storage down for longer than output.retry_s: try again next tick
                    log.warning(
                        "lease renewal failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc, self.ttl_s / 3
                    )

        self._thread = threading.Thread(target=loop, name="barkpipe-lease", daemon=True)
        self._thread.start()
        return self

    def check(self) -> None:
        """Raise LeaseLost when a renewal found the lease taken; call before committing results."""
        if self.lost:
            raise LeaseLost(f"the lease on {self.store.root!r} was taken over by another run; stop and rerun")

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours.

        A lease that cannot be deleted (the output turned read-only, storage down) is left to expire:
        the error that ended the run, not this one, is what the user must see.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            current = read_lease(self.store)
            if current is not None and current.get("token") == self.token:
                self.store.remove(LEASE)
        except OSError as exc:
            log.warning("the lease %s was not removed (%s); it expires %s", LEASE, exc, _utc(self.expires))

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_lease(store: Store, owner: str, ttl_s: float = 600.0, wait_s: float = 0.0, poll_s: float = POLL_S) -> Lease:
    """Take the output's lease, waiting up to wait_s for a live holder; OutputBusy names it otherwise."""
    deadline = time.monotonic() + wait_s
    store.makedirs()  # a first run's local output folder does not exist yet
    while True:
        lease = Lease(store, owner, uuid.uuid4().hex, ttl_s)
        lease.expires = time.time() + ttl_s
        if store.commit(LEASE, json.dumps(lease.record()).encode()):
            return lease
        current = read_lease(store)
        if current is None:
            continue  # released (or unreadable and removed) between our put and our read
        expired, gone = float(current.get("expires", 0)) < time.time(), _holder_gone(current)
        if expired or gone:
            why = f"its process {current.get('pid')} has ended" if gone else f"expired {current.get('expires_utc')}"
            log.warning("taking over the stale lease of run %r (%s)", current.get("owner"), why)
            store.remove(LEASE)  # see the module docstring for the race this leaves
            continue
        if time.monotonic() + poll_s > deadline:
            raise OutputBusy(
                f"output {store.root!r} is in use by run {current.get('owner')!r} (host {current.get('host')}, "
                f"pid {current.get('pid')}) until {current.get('expires_utc')} unless renewed; wait for it to "
                f"finish, set output.lease_wait_s, or delete {LEASE} there if that run is gone"
            )
        time.sleep(poll_s)


def read_lease(store: Store) -> dict | None:
    """The lease record, or None when there is none; an unreadable lease file counts as expired."""
    try:
        data = json.loads(store.read(LEASE))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {"owner": None, "expires": 0}  # half-written by a crashed run: stale
    return data if isinstance(data, dict) else {"owner": None, "expires": 0}


def _holder_gone(record: dict) -> bool:
    """True when the lease was taken on this machine by a process that no longer exists."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def mark_output(store: Store) -> bool:
    """Write the barkpipe marker at the root (create-only); True when this call created it."""
    store.makedirs()
    body = json.dumps({"barkpipe": "output", "created": _utc(time.time())})
    return store.commit(MARKER, body.encode())


def clear_for_overwrite(store: Store, names: tuple[str, ...] = OWNED) -> None:
    """Delete earlier results (output.overwrite) only from a folder that carries the barkpipe marker.

    An empty or missing folder has nothing to delete and is fine; the marker and lease stay.
    """
    if not store.exists(MARKER):
        present = [n for n in names if store.holds(n)]
        if present:
            raise UnsafeOutput(
                f"output.overwrite: {store.url()!r} has {', '.join(present)} but no {MARKER} marker, "
                "so it may not be a barkpipe output and nothing was deleted; point output.path at a barkpipe "
                f"output or an empty folder (an output of an older barkpipe: create an empty {MARKER} there)"
            )
        return
    for name in names:
        store.remove(name)
