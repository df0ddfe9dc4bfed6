"""Storage probes with a bounded wait: reach an object store, write and delete a probe, name what is wrong."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.output.layout import PROBE_PREFIX
from pipeline.storage import open_fs, redact_url

STORAGE_TIMEOUT_S = 10.0  # longest wait for an object store to answer one probe
PROBE_CONNECT_TIMEOUT_S = 5  # botocore connect/read timeout inside that wait (its default is 60 s)


class CheckError(ValueError):
    """A problem the user must fix before anything runs; the message is one line naming the key."""


def storage_endpoint(options: dict) -> str:
    """Where an S3 request goes, for messages: the configured endpoint, the environment's, or AWS."""
    url = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    return url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def storage_problem(exc: BaseException, key: str, url: str, options: dict | None = None) -> str | None:
    """One line for a storage failure a user can fix (credentials, endpoint, bucket); None for others."""
    options = options or {}
    section = key.rpartition(".")[0] or key
    where = f"{key} {redact_url(url)!r}"
    name, text = type(exc).__name__, str(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError") or "Unable to locate credentials" in text:
        return (f"{where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                f"in the environment, or {section}.storage_options.anon: true for a public bucket")  # fmt: skip
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError") or (
        isinstance(exc, (ConnectionError, TimeoutError)) and not isinstance(exc, PermissionError)
    ):
        return (f"{where}: cannot reach the storage endpoint {storage_endpoint(options)} ({name}); check "
                f"{section}.storage_options.endpoint_url (or AWS_ENDPOINT_URL) and the network")  # fmt: skip
    if "NoSuchBucket" in f"{text} {type(exc.__cause__).__name__}" or "bucket does not exist" in text.lower():
        bucket = url.split("://", 1)[-1].split("/", 1)[0]
        return f"{where}: bucket {bucket!r} does not exist at {storage_endpoint(options)}; create it or fix {key}"
    if isinstance(exc, PermissionError) or any(
        code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden")
    ):
        return (f"{where}: access denied ({text[:120]}); check the credentials (AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY) and that they may read and write this bucket")  # fmt: skip
    return None


def bounded(fn: Callable[[], Any], timeout_s: float, on_timeout: Callable[[], Exception]) -> Any:
    """fn() in a daemon thread; raise on_timeout() when it takes longer (the thread is abandoned)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="barkpipe-storage-probe")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise on_timeout()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _probe_options(url: str, options: dict) -> dict:
    """The user's options plus short botocore timeouts and one attempt, so a dead endpoint fails fast."""
    import fsspec  # ~0.1 s: paid when a remote location is probed, as pipeline.storage.open_fs does

    if fsspec.utils.get_protocol(url) not in ("s3", "s3a"):
        return dict(options)
    probe = dict(options)
    config = dict(probe.get("config_kwargs") or {})
    config.setdefault("connect_timeout", PROBE_CONNECT_TIMEOUT_S)
    config.setdefault("read_timeout", PROBE_CONNECT_TIMEOUT_S)
    config.setdefault("retries", {"max_attempts": 1})
    probe["config_kwargs"] = config
    probe["skip_instance_cache"] = True  # do not hand these short timeouts to the run's own filesystem
    return probe


def check_storage(url: str, options: dict, key: str, *, write: bool, timeout_s: float = STORAGE_TIMEOUT_S) -> str:
    """Reach a remote location within timeout_s (and, with write, create and delete a probe object)."""

    def probe() -> str:
        fs, path = open_fs(url, _probe_options(url, options))
        bucket = path.split("/", 1)[0]
        # ls, not exists: s3fs's exists() turns missing credentials and dead endpoints into False.
        try:
            fs.ls(bucket)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"NoSuchBucket: bucket does not exist: {bucket}") from exc
        if write:
            name = f"{path.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
            fs.pipe_file(name, b"barkpipe write probe")
            fs.rm(name)
            return "reachable and writable"
        return "reachable"

    def timeout() -> Exception:
        return CheckError(f"{key} {url!r}: the storage endpoint {storage_endpoint(options)} did not answer within "
                          f"{timeout_s:g} s; check the endpoint_url and the network")  # fmt: skip

    try:
        return bounded(probe, timeout_s, timeout)
    except CheckError:
        raise
    except Exception as exc:
        problem = storage_problem(exc, key, url, options)
        if problem is None:
            raise
        raise CheckError(problem) from None


def check_local_output(path: str, key: str = "output.path") -> str:
    """Create and delete a probe file where the output will go (or in its nearest existing parent)."""
    target = Path(path).expanduser()
    base = target
    while not base.exists():
        if base.parent == base:
            break
        base = base.parent
    if not base.is_dir():
        raise CheckError(f"{key} {path!r}: {base} is a file, not a folder; choose another {key}")
    probe = base / f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        probe.write_bytes(b"barkpipe write probe")
        probe.unlink()
    except OSError as exc:
        raise CheckError(
            f"{key} {path!r}: cannot write in {base} ({exc.strerror or exc}); choose a writable {key}"
        ) from None
    return "writable" if base == target else f"will be created under {base}"
