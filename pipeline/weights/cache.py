"""The node-local weights cache: one lock per folder, atomic file placement, a marker written last."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

MARKER = ".barkpipe-weights.json"  # {"complete": bool, "files": {rel: {size, etag, sha256}}, ...}
PARTIAL = ".partial"  # downloads land here first, then are renamed into place
HF_STATE = ".cache"  # huggingface_hub's own bookkeeping inside a local_dir
OWN_NAMES = (MARKER, PARTIAL, HF_STATE)
HASH_BLOCK = 8 << 20  # bytes read per sha256 update

log = logging.getLogger(__name__)


@contextlib.contextmanager
def node_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold `<folder>.lock` (flock: released if the holder dies), so one process per node downloads."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f"{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process on this node to fetch %s into %s", what, folder)
        started = time.monotonic()
        lock.acquire()
        log.info("waited %.1f s for %s", time.monotonic() - started, what)
    try:
        yield
    finally:
        lock.release()


def read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def write_marker(folder: Path, data: dict) -> None:
    """Replace the marker atomically (temp file, fsync, rename)."""
    tmp = folder / f".{MARKER}.{uuid.uuid4().hex[:8]}"
    with tmp.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MARKER)


def sizes_match(folder: Path, files: dict[str, dict]) -> bool:
    """Every recorded file is present with its recorded size (cheap: one stat each)."""
    for rel, entry in files.items():
        try:
            if (folder / rel).stat().st_size != entry.get("size"):
                return False
        except OSError:
            return False
    return True


def complete(folder: Path) -> dict | None:
    """The marker when the folder holds a finished download whose files all have their sizes."""
    marker = read_marker(folder)
    if marker and marker.get("complete") and sizes_match(folder, marker["files"]):
        return marker
    return None


def clear_partial(folder: Path) -> None:
    """Drop half-written downloads of an earlier, interrupted process (the caller holds the lock)."""
    shutil.rmtree(folder / PARTIAL, ignore_errors=True)


def place(folder: Path, rel: str, fill: Callable[[str], None], size: int | None) -> str:
    """Fill a temp file (fill(path)), check its size, move it to folder/rel; returns its sha256."""
    tmp = folder / PARTIAL / f"{uuid.uuid4().hex[:12]}-{Path(rel).name}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    fill(str(tmp))
    got = tmp.stat().st_size
    if size is not None and got != size:
        tmp.unlink(missing_ok=True)
        raise OSError(f"{rel}: got {got} bytes, the source lists {size}")
    digest = sha256_of(tmp)
    target = folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    return digest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def remove_strays(folder: Path, keep: set[str]) -> None:
    """Delete files a changed source no longer has, so the folder holds exactly one layout."""
    for path in sorted(folder.rglob("*"), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if rel.split("/")[0] in OWN_NAMES or rel in keep:
            continue
        if path.is_file() or path.is_symlink():
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
