"""fsspec helpers: open a URL with options, retry transient errors, atomic and create-only writes, redaction."""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Errors that say something about the request itself; retrying cannot change the answer.
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
# Fragments of botocore/aiohttp/OS messages and class names that mean "try again later".
_TRANSIENT_MARKERS = (
    "slowdown", "throttl", "timeout", "timed out", "temporarily", "serviceunavailable", "service unavailable",
    "internalerror", "internal error", "connection reset", "connection aborted", "connectionerror",
    "broken pipe", "requesttimeout", "endpointconnectionerror", "server disconnected",
)
_STORAGE_LIBRARIES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs", "gcsfs", "adlfs", "fsspec")
_TRANSIENT_STATUS = re.compile(r"\b(500|502|503|504)\b")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """Hide `user:password@` in URLs (s3://KEY:SECRET@bucket) inside any string."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def is_transient(exc: BaseException) -> bool:
    """True for network/throttling failures worth retrying; False for not-found, exists, denied, bugs."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if not isinstance(exc, OSError) and not type(exc).__module__.startswith(_STORAGE_LIBRARIES):
        return False  # a KeyError("row 500") is a bug, whatever its message says
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _TRANSIENT_MARKERS) or bool(_TRANSIENT_STATUS.search(text))


def retry(fn: Callable[..., T], *args: Any, attempts: int = 4, base_delay_s: float = 0.25, **kwargs: Any) -> T:
    """Call fn, retrying transient storage errors with exponential backoff (0.25, 0.5, 1 s...)."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(base_delay_s * 2**attempt)
    raise AssertionError("unreachable: the loop returns or raises")


def open_fs(url: str, storage_options: dict[str, Any] | None = None):
    """(filesystem, path) for a local path or fsspec URL; credentials come from options or the environment."""
    import fsspec

    options = dict(storage_options or {})
    protocol = fsspec.utils.get_protocol(url)
    if protocol in ("s3", "s3a"):
        # The driver must see objects the workers wrote; s3fs caches listings by default.
        options.setdefault("use_listings_cache", False)
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError, TypeError) as exc:  # TypeError: an option the filesystem does not take
        raise ValueError(f"cannot open {redact_url(url)!r}: {exc}") from None
    return fs, path


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


@dataclass
class Store:
    """A folder on some filesystem; every write either lands whole under its final name or not at all."""

    fs: Any
    root: str

    @classmethod
    def open(cls, url: str, storage_options: dict[str, Any] | None = None) -> "Store":
        fs, root = open_fs(url, storage_options)
        return cls(fs, root.rstrip("/"))

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def makedirs(self, *parts: str) -> None:
        # Object stores have no directories; local and NFS outputs need them before the first write.
        if _is_local(self.fs):
            self.fs.makedirs(self.path(*parts), exist_ok=True)

    def write(self, rel: str, data: bytes) -> str:
        """Write (replacing) rel; on local disks via a temp file + rename so readers never see half a file."""
        path = self.path(rel)
        if _is_local(self.fs):
            tmp = _tmp_name(path)
            _write_local(tmp, data)
            os.replace(tmp, path)
        else:
            retry(self.fs.pipe_file, path, data)
        return path

    def write_many(self, items: dict[str, bytes]) -> None:
        """Write (replacing) several files; on object stores in one concurrent call (s3fs pipes in parallel)."""
        if _is_local(self.fs) or len(items) < 2:
            for rel, data in items.items():
                self.write(rel, data)
        else:
            retry(self.fs.pipe, {self.path(rel): data for rel, data in items.items()})

    def commit(self, rel: str, data: bytes) -> bool:
        """Create rel only if absent (S3 If-None-Match / local hard link); False when it already existed."""
        path = self.path(rel)
        try:
            if _is_local(self.fs):
                if os.path.exists(path):  # the common resume case: skip the temp file entirely
                    return False
                tmp = _tmp_name(path)
                _write_local(tmp, data)
                try:
                    os.link(tmp, path)  # atomic and fails if the name exists
                finally:
                    os.unlink(tmp)
            else:
                retry(self.fs.pipe_file, path, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            # Ceph RGW's 412 lacks the Condition field s3fs reads, so it arrives as EINVAL.
            if _precondition_failed(exc):
                return False
            raise
        return True

    def read(self, rel: str) -> bytes:
        return retry(self.fs.cat_file, self.path(rel))

    def glob(self, pattern: str) -> list[str]:
        """Full paths matching pattern under root, sorted; fresh listing every call."""
        if hasattr(self.fs, "invalidate_cache"):
            self.fs.invalidate_cache(self.root)
        return sorted(retry(self.fs.glob, self.path(pattern)))

    def remove(self, rel: str) -> None:
        path = self.path(rel)
        if retry(self.fs.exists, path):
            retry(self.fs.rm, path, recursive=True)


def _tmp_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/.tmp-{uuid.uuid4().hex[:12]}-{tail}"


def _write_local(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _precondition_failed(exc: OSError) -> bool:
    """True when an S3 create-only write was refused because the object already exists."""
    cause = getattr(exc.__cause__, "response", None) or {}
    return cause.get("Error", {}).get("Code") == "PreconditionFailed"
