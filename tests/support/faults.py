"""Faults for the pipeline tests: kill a process tree or session, kill a Ray actor, an S3 outage proxy.

Also the check every fault test ends with: each input id exactly once in metadata or errors,
summary.json accounted, every metadata row's audio file present and decodable.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from support.s3servers import free_port

_CHUNK = 65536


# ---------------------------------------------------------------- processes (Linux /proc, no psutil)


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, sid) of a live process, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie holds nothing: its parent only has to reap it
        return None
    return int(fields[1]), int(fields[2]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def session_pids(root: int) -> set[int]:
    """root, its descendants, and every process of its session or of their process groups.

    Ray's raylet starts each worker (every actor) in a process group of its own, so killing the
    group of `ray start` alone leaves actors running; they stay in the session and the tree.
    """
    stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
    found = {root} if root in stats else set()
    found |= {pid for pid, (_, _, sid) in stats.items() if sid == root}
    grew = True
    while grew:  # descendants, to any depth (a process that called setsid() stays in the tree)
        more = {pid for pid, (ppid, _, _) in stats.items() if ppid in found and pid not in found}
        grew, found = bool(more), found | more
    groups = {stats[pid][1] for pid in found}
    return found | {pid for pid, (_, pgid, _) in stats.items() if pgid in groups and pgid != os.getpgid(0)}


def kill_pids(pids: set[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: set[int], timeout_s: float = 10.0) -> set[int]:
    """Wait until none of pids is alive (zombies count as gone); returns those still alive."""
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _stat(pid) is not None}
        if alive:
            time.sleep(0.1)
    return alive


def find_process(needle: str) -> int | None:
    """The pid of a process whose command line contains needle (e.g. a test's unique output path)."""
    for pid in _all_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and pid != os.getpid():
            return pid
    return None


def wait_for(check: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.5):
    """Poll check() until it returns something truthy; returns it, or fails naming what was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
        time.sleep(every_s)


# ---------------------------------------------------------------- Ray actors


def alive_actors(dashboard: str, class_part: str) -> list:
    """ALIVE actors whose class name contains class_part, e.g. 'EngineStage' for the engine pool."""
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], detail=True, limit=1000,
                         raise_on_missing_output=False)  # fmt: skip
    return [a for a in actors if class_part in (a.class_name or "") and a.pid]


def kill_actor(dashboard: str, class_part: str, node_id: str | None = None):
    """SIGKILL the process of one alive actor of that class (on node_id if given); returns its state."""
    actors = [a for a in alive_actors(dashboard, class_part) if node_id is None or a.node_id == node_id]
    if not actors:
        raise LookupError(f"no alive actor with {class_part!r} in its class name")
    actor = actors[0]
    os.kill(actor.pid, signal.SIGKILL)
    return actor


# ---------------------------------------------------------------- an S3 outage


class OutageProxy:
    """A TCP proxy on 127.0.0.1 in front of a server; `pause()` makes it unreachable, `resume()` brings it back.

    Paused, nothing listens on the port (connections are refused) and open connections are reset,
    which is what a client sees when the server or the network in between goes away.
    """

    def __init__(self, target_url: str):
        host_port = target_url.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connections = 0  # accepted so far: a test can see the client did come through here

    @property
    def paused(self) -> bool:
        return self._listener is None

    def resume(self) -> "OutageProxy":
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # shutdown() wakes the accept() below; close() alone would not
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _reset(conn)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def outage(self, seconds: float) -> threading.Thread:
        """Pause now and resume after `seconds` in the background; join the thread to wait for it."""
        self.pause()

        def back() -> None:
            time.sleep(seconds)
            self.resume()

        thread = threading.Thread(target=back, daemon=True)
        thread.start()
        return thread

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # pause() closed the listener
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:  # paused in between
                    _reset(client), _reset(upstream)
                    continue
                self._conns.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(_CHUNK)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):  # reset by pause() or closed by either side
            return
        finally:
            with self._lock:
                self._conns.discard(a)
                self._conns.discard(b)
            _close(a)
            _close(b)

    def __enter__(self) -> "OutageProxy":
        return self.resume()

    def __exit__(self, *exc) -> None:
        self.pause()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dead peer's host answers: the client sees 'connection reset'."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()


# ---------------------------------------------------------------- what every fault test checks


@dataclass
class Outcome:
    """What an output folder holds after a run, read back from storage."""

    metadata: list[dict]
    error_ids: list[str]
    summary: dict | None

    @property
    def meta_ids(self) -> list[str]:
        return [r["id"] for r in self.metadata]


def read_outcome(fs, root: str) -> Outcome:
    """metadata/, errors/ and summary.json under root (an fsspec filesystem and a path on it)."""
    import pyarrow.parquet as pq

    def rows(kind: str) -> list[dict]:
        parts = sorted(p for p in fs.glob(f"{root}/{kind}/*.parquet"))
        return [r for p in parts for r in pq.read_table(io.BytesIO(fs.cat_file(p))).to_pylist()]

    summary = json.loads(fs.cat_file(f"{root}/summary.json")) if fs.exists(f"{root}/summary.json") else None
    return Outcome(rows("metadata"), [r["id"] for r in rows("errors")], summary)


def accounting_problems(fs, root: str, input_ids: list[str]) -> list[str]:
    """Every way the output at root breaks 'nothing lost, nothing doubled'; empty when it holds."""
    import soundfile as sf

    out = read_outcome(fs, root)
    problems = []
    seen = out.meta_ids + out.error_ids
    doubled = sorted({i for i in seen if seen.count(i) > 1})
    if doubled:
        problems.append(f"ids more than once in metadata+errors: {doubled}")
    lost = sorted(set(input_ids) - set(seen))
    if lost:
        problems.append(f"input ids in neither metadata nor errors: {lost}")
    extra = sorted(set(seen) - set(input_ids))
    if extra:
        problems.append(f"ids that are not in the input: {extra}")
    s = out.summary
    if s is None:
        problems.append("no summary.json")
    elif not (s.get("accounted") is True and s.get("ok", 0) + s.get("errors", 0) == s.get("input_rows")
              == len(input_ids)):  # fmt: skip
        problems.append(f"summary.json not accounted: input_rows={s.get('input_rows')} ok={s.get('ok')} "
                        f"errors={s.get('errors')} accounted={s.get('accounted')} (input has {len(input_ids)})")
    for row in out.metadata:
        path = f"{root}/{row['audio_path']}"
        try:
            audio, rate = sf.read(io.BytesIO(fs.cat_file(path)))
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            problems.append(f"{row['id']}: audio {row['audio_path']} unreadable: {type(exc).__name__}: {exc}")
            continue
        if rate != row["sample_rate"] or abs(len(audio) / rate - row["duration_s"]) > 0.05:
            problems.append(f"{row['id']}: {row['audio_path']} holds {len(audio) / rate:.2f}s at {rate} Hz, "
                            f"metadata says {row['duration_s']:.2f}s at {row['sample_rate']} Hz")
    return problems
