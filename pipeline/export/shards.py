"""Where an export's files go: shard size, local temp files, their commit under DIR, stale files, the marker."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from pipeline.storage import Store, retry

DEFAULT_SHARD_SIZE = "500MB"
MARKER = ".barkpipe-export.json"  # what the last export into DIR wrote; only files it lists are ever removed
STAGING = ".tmp-export"  # hidden: `datasets` and webdataset readers skip it
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ShardSize:
    """A shard closes once it holds `rows` rows or `bytes` bytes of audio (whichever is set)."""

    rows: int | None = None
    bytes: int | None = None

    def full(self, rows: int, size: int, next_size: int) -> bool:
        """True when a shard holding rows/size should close before taking a row of next_size bytes."""
        if rows == 0:
            return False  # one row larger than the limit still gets its shard
        if self.rows is not None:
            return rows >= self.rows
        assert self.bytes is not None, "a ShardSize sets rows or bytes"
        return size + next_size > self.bytes


def parse_shard_size(text: str) -> ShardSize:
    """`500MB`, `1GiB`, `64KB` (audio bytes per shard) or `2000rows` / `2000` (rows per shard)."""
    match = _SIZE.match(text or "")
    unit = match.group(2).lower() if match else ""
    if match is None or (unit not in _UNITS and unit not in ("", "rows")):
        raise ValueError(
            f"--shard-size {text!r}: write a size such as 500MB, 2GiB or 64KB, or a row count such as 2000rows"
        )
    number = float(match.group(1))
    if unit in ("", "rows"):
        if number != int(number) or number < 1:
            raise ValueError(f"--shard-size {text!r}: a row count must be a whole number >= 1")
        return ShardSize(rows=int(number))
    size = int(number * _UNITS[unit])
    if size < 1:
        raise ValueError(f"--shard-size {text!r}: a size must be at least 1 byte")
    return ShardSize(bytes=size)


def settle(path: str) -> None:
    """Put a finished local file on disk before it gets its name, and drop it from the page cache.

    An export writes as much as the audio it reads and rereads none of it: left to writeback, a
    million-row export's shards (18 GB) crowd the cache that its reads need, and a crash after the
    rename could leave a named shard without its bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if hasattr(os, "posix_fadvise"):  # Linux and most Unixes; not macOS
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Target:
    """DIR (local or URL): shards are written to local temp files, then committed under their name.

    Local: the temp files live in DIR/.tmp-export/ and a commit is a rename. Elsewhere: they live in
    a local temp folder, are put under DIR/.tmp-export/ (`stage`) or straight under their name
    (`put`), and a staged file is moved to its name at the end (`commit_staged`).
    """

    def __init__(self, url: str, storage_options: dict | None = None):
        self.store = Store.open(url, storage_options)
        self.store.key = "--out"
        self.url = url
        self._local_dir: str | None = None

    def __enter__(self) -> Target:
        if self.store.local:
            self.store.remove(STAGING)  # an interrupted export's leftovers
            self.store.makedirs(STAGING)
            self._local_dir = self.store.path(STAGING)
        else:
            self._local_dir = tempfile.mkdtemp(prefix="barkpipe-export-")
        return self

    def __exit__(self, *exc) -> None:
        if self.store.local:
            self.store.remove(STAGING)
        elif self._local_dir:
            shutil.rmtree(self._local_dir, ignore_errors=True)

    def temp_path(self, name: str) -> str:
        """A local file to write a shard into before it is committed."""
        assert self._local_dir is not None, "use Target as a context manager"
        return os.path.join(self._local_dir, name)

    def put(self, local: str, rel: str) -> None:
        """Move a finished local file to DIR/rel (replacing what is there)."""
        if self.store.local:
            target = self.store.path(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            settle(local)
            os.replace(local, target)
            return
        retry(self.store.fs.put_file, local, self.store.path(rel), budget_s=self.store.retry_s, what=rel)
        os.unlink(local)

    def stage(self, local: str) -> str:
        """Keep a finished local file until its final name is known; returns the staged name."""
        name = os.path.basename(local)
        if not self.store.local:
            self.put(local, f"{STAGING}/{name}")
        return name

    def commit_staged(self, name: str, rel: str) -> None:
        if self.store.local:
            self.put(os.path.join(self.store.path(STAGING), name), rel)
            return
        src, dst = self.store.path(f"{STAGING}/{name}"), self.store.path(rel)
        retry(self.store.fs.mv, src, dst, budget_s=self.store.retry_s, what=rel)

    def size(self, rel: str) -> int:
        return int(retry(self.store.fs.size, self.store.path(rel), budget_s=self.store.retry_s, what=rel))

    def previous(self) -> dict | None:
        """The marker of the last export into DIR, or None."""
        try:
            return json.loads(self.store.read(MARKER))
        except FileNotFoundError:
            return None

    def finish(self, written: list[str], marker: dict) -> list[str]:
        """Remove what the last export wrote and this one did not (only files a marker lists), then
        write the marker; returns the removed names."""
        earlier = (self.previous() or {}).get("files") or []
        stale = sorted(set(earlier) - set(written))
        self.store.remove_files(stale)
        if not self.store.local:
            self.store.remove(STAGING)
        body = json.dumps(marker | {"files": sorted(written)}, indent=1, sort_keys=True)
        self.store.write(MARKER, body.encode())
        return stale

    def refuse_foreign(self, source: Store) -> None:
        """DIR must not be the run's own output, and a non-empty DIR must be an earlier export."""
        if source.fs.protocol == self.store.fs.protocol and source.root.rstrip("/") == self.store.root.rstrip("/"):
            raise ValueError(f"--out {self.url!r} is the run's output itself; export into another folder")
        if self.previous() is not None:
            return
        present = retry(self._listing, budget_s=self.store.retry_s, what=self.url)
        if present:
            raise ValueError(
                f"--out {self.url!r} already holds files ({', '.join(present[:3])}) but no {MARKER}, so it is "
                "not an earlier export and nothing was written; choose an empty or new folder"
            )

    def _listing(self) -> list[str]:
        fs, root = self.store.fs, self.store.root
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache(root)
        if not fs.exists(root):
            return []
        names = [os.path.basename(p.rstrip("/")) for p in fs.ls(root, detail=False)]
        return [n for n in names if n != STAGING]
