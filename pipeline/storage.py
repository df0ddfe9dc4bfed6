"""The one door to a filesystem: open a URL with options, retry transient errors, atomic and create-only writes."""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from pipeline.redact import redact_text
from pipeline.storagefaults import OutputFault, fault_errno, fault_line

T = TypeVar("T")
log = logging.getLogger(__name__)

# output.retry_s's default: long enough to ride out an S3 restart or a network blip of minutes.
DEFAULT_RETRY_S = 300.0
FIRST_DELAY_S = 0.25  # first backoff; doubles per attempt...
MAX_DELAY_S = 15.0  # ...up to this, so an outage that ends is noticed within ~15 s
# Errors that say something about the request itself; retrying cannot change the answer.
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
# Fragments of botocore/aiohttp/OS messages and class names that mean "try again later".
_TRANSIENT_MARKERS = (
    "slowdown",
    "throttl",
    "timeout",
    "timed out",
    "temporarily",
    "serviceunavailable",
    "service unavailable",
    "internalerror",
    "internal error",
    "connection reset",
    "connection aborted",
    "connection refused",
    "connectionerror",
    "broken pipe",
    "requesttimeout",
    "endpointconnectionerror",
    "server disconnected",
    "cannot connect",
    "could not connect",
    "too many requests",
    "requestlimitexceeded",
    "bad gateway",
)
_STORAGE_LIBRARIES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs", "gcsfs", "adlfs", "fsspec")
_TRANSIENT_STATUS = re.compile(r"\b(429|500|502|503|504)\b")


_TEMP = re.compile(r"(?:^|/)\.tmp-[0-9a-f]{12}-[^/]+$")  # _tmp_name's files


def is_temp_name(path: str) -> bool:
    """True for a temp file a local write made (`.tmp-<12 hex>-<name>`), in any folder."""
    return bool(_TEMP.search(path))


class StorageUnavailable(OSError):
    """Storage kept failing with transient errors for the whole retry budget; the message names the URL."""


class UnsafeOutput(ValueError):
    """A write or delete that would leave the output folder (a symlink out) or hit a folder not ours."""


def redact_url(text: str) -> str:
    """Hide `user:password@` in URLs and signed query strings (X-Amz-Signature=...) inside any string."""
    return redact_text(text)


def is_transient(exc: BaseException) -> bool:
    """True for network/throttling failures worth retrying; False for not-found, exists, denied, bugs."""
    if isinstance(exc, (_PERMANENT, StorageUnavailable)) or fault_errno(exc) is not None:
        return False  # a full disk or a denied write gives the same answer however often it is asked
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if not isinstance(exc, OSError) and not type(exc).__module__.startswith(_STORAGE_LIBRARIES):
        return False  # a KeyError("row 500") is a bug, whatever its message says
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _TRANSIENT_MARKERS) or bool(_TRANSIENT_STATUS.search(text))


def backoff_delays(
    budget_s: float, base_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S, jitter: float = 0.5
):
    """Sleeps between attempts: base, 2*base, ... capped at max_delay_s, each shortened by up to
    `jitter` of itself (many writers must not retry in step); the sleeps add up to at most budget_s."""
    slept, delay = 0.0, base_delay_s
    while True:
        pause = min(delay, max_delay_s) * (1 - jitter * random.random())
        if slept + pause > budget_s:
            return
        slept += pause
        yield pause
        delay *= 2


def retry(
    fn: Callable[..., T],
    *args: Any,
    budget_s: float = DEFAULT_RETRY_S,
    base_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
    what: str | None = None,
    **kwargs: Any,
) -> T:
    """Call fn, retrying transient storage errors with bounded exponential backoff for about budget_s.

    Past the budget, StorageUnavailable names `what` (a URL or path; else the first argument).
    Time spent inside failing calls counts too (s3fs and botocore retry a few times on their own).
    """
    start = time.monotonic()
    delays = backoff_delays(budget_s, base_delay_s, max_delay_s)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            elapsed = time.monotonic() - start
            pause = next(delays, None)
            if pause is None or elapsed + pause > budget_s:
                target = redact_text(str(what if what is not None else (args[0] if args else fn)))
                raise StorageUnavailable(
                    f"storage at {target!r} kept failing for {elapsed:.0f} s ({attempt} attempts; last: "
                    f"{type(exc).__name__}: {redact_text(str(exc))[:200]}); check that it is reachable, "
                    "or raise output.retry_s"
                ) from exc
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "storage error (attempt %d, retrying for up to %.0f s more): %s: %s",
                    attempt,
                    budget_s - elapsed,
                    type(exc).__name__,
                    redact_text(str(exc))[:200],
                )
            time.sleep(pause)


def open_fs(url: str, storage_options: dict[str, Any] | None = None):
    """(filesystem, path) for a local path or fsspec URL; credentials come from options or the environment."""
    import fsspec  # ~0.1 s: paid when a location is opened, not by every command that imports storage

    options = dict(storage_options or {})
    protocol = fsspec.utils.get_protocol(url)
    if protocol in ("s3", "s3a"):
        # The driver must see objects the workers wrote; s3fs caches listings by default.
        options.setdefault("use_listings_cache", False)
    if protocol in ("http", "https"):
        url, options = _userinfo_to_auth(url, options)
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError, TypeError) as exc:  # TypeError: an option the filesystem does not take
        raise ValueError(redact_url(f"cannot open {url!r}: {exc}")) from None
    return fs, path


def _userinfo_to_auth(url: str, options: dict) -> tuple[str, dict]:
    """Move `user:password@` of an http(s) URL into the session's basic auth, so paths carry no password.

    Every path derived from the URL (file lists handed to Ray, log lines, errors) is then clean.
    """
    parts = urlsplit(url)
    if parts.username is None:
        return url, options
    import aiohttp  # ~0.16 s, and only http(s) URLs with a password need it

    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    auth = aiohttp.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
    client_kwargs = {**options.get("client_kwargs", {}), "auth": auth}
    return urlunsplit(parts._replace(netloc=host)), {**options, "client_kwargs": client_kwargs}


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem  # fsspec waits, as in open_fs

    return isinstance(fs, LocalFileSystem)


@dataclass
class Store:
    """A folder on some filesystem; every write either lands whole under its final name or not at all.

    On local disks every path is checked to stay inside the root after resolving symlinks, and a
    symlink at a file's own name is never followed (it is not ours: it is replaced or ignored).
    """

    fs: Any
    root: str
    retry_s: float = DEFAULT_RETRY_S  # output.retry_s: how long a call rides out transient errors
    key: str = "output.path"  # the setting that chose this folder, named in OutputFault lines

    @classmethod
    def open(cls, url: str, storage_options: dict[str, Any] | None = None, retry_s: float = DEFAULT_RETRY_S) -> Store:
        fs, root = open_fs(url, storage_options)
        return cls(fs, root.rstrip("/"), retry_s)

    @property
    def local(self) -> bool:
        return _is_local(self.fs)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url(self, rel: str = "") -> str:
        """rel's location (the root's by default) with its scheme, as messages name it."""
        return self._url(self.path(rel) if rel else self.root)

    def _retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return retry(fn, *args, budget_s=self.retry_s, what=self._url(args[0] if args else self.root), **kwargs)

    def _url(self, path: Any) -> str:
        if not isinstance(path, str):
            return self.root
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if self.local or "://" in path else f"{protocol}://{path}"

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a full disk, a quota, a read-only mount or a denied write into one OutputFault line."""
        try:
            yield
        except OutputFault:
            raise
        except OSError as exc:
            code = fault_errno(exc)
            if code is None:
                raise
            line = fault_line(self.key, redact_url(self._url(self.root)), code, exc, what, self.local)
            raise OutputFault(code, line) from exc

    def makedirs(self, *parts: str) -> None:
        # Object stores have no directories; local and NFS outputs need them before the first write.
        if self.local:
            path = self.path(*parts)
            self._check_inside(path, leaf_too=True)
            with self._writing(f"creating the folder {'/'.join(parts) or '.'}"):
                self.fs.makedirs(path, exist_ok=True)

    def write(self, rel: str, data: bytes) -> str:
        """Write (replacing) rel; on local disks via a temp file + rename so readers never see half a file."""
        path = self.path(rel)
        with self._writing(f"writing {rel}"):
            if self.local:
                self._check_inside(path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = _write_temp(path, data)
                try:
                    os.replace(tmp, path)  # replaces a symlink at `path` itself, never its target
                except BaseException:
                    _unlink_quietly(tmp)
                    raise
            else:
                self._retry(self.fs.pipe_file, path, data)
        return path

    def write_many(self, items: dict[str, bytes]) -> None:
        """Write (replacing) several files; on object stores in one concurrent call (s3fs pipes in parallel)."""
        if self.local or len(items) < 2:
            for rel, data in items.items():
                self.write(rel, data)
        else:
            with self._writing(f"writing {', '.join(sorted(items))}"):
                self._retry(self.fs.pipe, {self.path(rel): data for rel, data in items.items()})

    def commit(self, rel: str, data: bytes) -> bool:
        """Create rel only if absent (S3 If-None-Match / local hard link); False when it already existed."""
        path = self.path(rel)
        try:
            with self._writing(f"writing {rel}"):
                if self.local:
                    return self._commit_local(path, data)
                self._retry(self.fs.pipe_file, path, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            # Ceph RGW's 412 lacks the Condition field s3fs reads, so it arrives as EINVAL.
            if _precondition_failed(exc):
                return False
            raise
        return True

    def _commit_local(self, path: str, data: bytes) -> bool:
        self._check_inside(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)  # a sub-folder such as audio/r1/
        if os.path.islink(path):  # a link is never a commit of ours (a dangling one used to block runs)
            os.unlink(path)
        elif os.path.exists(path):  # the common resume case: skip the temp file entirely
            return False
        tmp = _write_temp(path, data)
        try:
            os.link(tmp, path)  # atomic and fails if the name exists
        finally:
            _unlink_quietly(tmp)
        return True

    def read(self, rel: str) -> bytes:
        path = self.path(rel)
        if self.local:
            self._check_inside(path)
            if os.path.islink(path):
                raise FileNotFoundError(f"{path} is a symlink, not a file barkpipe wrote")
        return self._retry(self.fs.cat_file, path)

    def exists(self, rel: str) -> bool:
        path = self.path(rel)
        if self.local:
            return os.path.isfile(path) and not os.path.islink(path)
        return self._retry(self.fs.exists, path)

    def holds(self, rel: str) -> bool:
        """True when rel exists under the root, as a file or a folder."""
        return self._retry(self.fs.exists, self.path(rel))

    def glob(self, pattern: str) -> list[str]:
        """Full paths matching pattern under root, sorted; fresh listing every call; local symlinks left out."""
        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(self.root)
        found = sorted(self._retry(self.fs.glob, self.path(pattern)))
        return [p for p in found if not os.path.islink(p)] if self.local else found

    def find(self, rel: str) -> list[str]:
        """Every file under rel, at any depth, relative to the root, sorted (one listing); local symlinks left out."""
        base = self.path(rel)
        if self.local:
            found = [os.path.join(d, f) for d, _, files in os.walk(base) for f in files]  # walk follows no links
            found = [p for p in found if not os.path.islink(p)]
        else:
            if hasattr(self.fs, "invalidate_cache"):
                self.fs.invalidate_cache(base)
            found = self._retry(self.fs.find, base)
        return sorted(p[len(self.root) + 1 :] for p in found)

    def remove(self, rel: str) -> None:
        path = self.path(rel)
        with self._writing(f"deleting {rel}"):
            if self.local:
                self._check_inside(path)
                if os.path.islink(path):
                    os.unlink(path)  # the link goes, never what it points to
                    return
            if self._retry(self.fs.exists, path):
                self._retry(self.fs.rm, path, recursive=True)

    def remove_files(self, rels: list[str]) -> None:
        """Delete these files (ones already gone are fine); on object stores in batched requests."""
        if not rels:
            return
        with self._writing(f"deleting {len(rels)} file(s) such as {rels[0]}"):
            if not self.local:
                self._retry(self.fs.rm, [self.path(r) for r in rels])
                return
            for rel in rels:
                path = self.path(rel)
                self._check_inside(path)
                _unlink_quietly(path, strict=True)

    def _check_inside(self, path: str, leaf_too: bool = False) -> None:
        """Refuse local paths whose folders (and, with leaf_too, the path itself) resolve outside the root."""
        root = os.path.realpath(self.root)
        target = os.path.realpath(path if leaf_too else os.path.dirname(path))
        if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
            raise UnsafeOutput(
                f"output.path: {path!r} resolves to {target!r}, outside {root!r} (a symlink?); "
                "remove the link or write to another output.path"
            )


def _tmp_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/.tmp-{uuid.uuid4().hex[:12]}-{tail}"


def _write_temp(path: str, data: bytes) -> str:
    """A temp file beside path holding data; a write that fails (a full disk) leaves no temp behind."""
    tmp = _tmp_name(path)
    try:
        _write_local(tmp, data)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str, strict: bool = False) -> None:
    """Remove a file if it is there; strict: only a missing file is quiet (a read-only mount raises)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        if strict:
            raise
        log.warning("could not remove %s", path)


def _write_local(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _precondition_failed(exc: OSError) -> bool:
    """True when an S3 create-only write was refused because the object already exists."""
    cause = getattr(exc.__cause__, "response", None) or {}
    return cause.get("Error", {}).get("Code") == "PreconditionFailed"
