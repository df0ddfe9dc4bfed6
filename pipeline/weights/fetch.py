"""fetch_weights: a local folder as is; an fsspec URL or hf://owner/repo downloaded once per node."""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

from bark_model.download import HF_LAYOUT_FILES
from pipeline.storage import open_fs, retry
from pipeline.weights.cache import (
    OWN_NAMES,
    clear_partial,
    complete,
    node_lock,
    place,
    read_marker,
    remove_strays,
    write_marker,
)  # fmt: skip
from pipeline.weights.select import NoBarkWeights, bark_files, weights_hint
from pipeline.weights.source import WeightsError, cache_folder, endpoint_of, parse_source

# The listing is the first request: an endpoint that does not answer fails within this bound
# instead of s3fs's retries of botocore's retries (40 s and more on a dead host).
LISTING_TIMEOUT_S = 12.0
VERSION_KEYS = ("ETag", "etag", "md5Hash", "sha256", "checksum")  # per-object version ids, by filesystem
ACCESS_FIX = ("check the credentials (model.storage_options, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) "
              "and the bucket policy")  # fmt: skip
CACHE_FIX = "free space there or point BARKPIPE_CACHE at a writable node-local folder"
ENDPOINT_FIX = "check the endpoint (storage_options client_kwargs.endpoint_url or AWS_ENDPOINT_URL) and the network"

log = logging.getLogger(__name__)


def fetch_weights(source: str, storage_options: dict | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local directory BarkEngine.from_dir can load, fetching `source` into the node cache if needed.

    source: a local folder (returned as is), an fsspec URL such as s3://bucket/prefix (credentials
    from storage_options or the AWS_* environment), or hf://owner/repo[@revision].
    cache_dir: default $BARKPIPE_CACHE, else ~/.cache/barkpipe. Raises WeightsError (one line).
    """
    src = parse_source(source)
    options = dict(storage_options or {})
    if src.kind == "local":
        path = Path(src.location).expanduser()
        if not path.is_dir():
            raise WeightsError(f"weights folder {src.url!r} not found; {weights_hint(path)}; "
                               "or give s3://bucket/prefix or hf://owner/repo")  # fmt: skip
        return path
    folder = cache_folder(src, options, cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(
            f"weights {src.url}: cannot create the cache folder {folder} ({exc.strerror}); {CACHE_FIX}"
        ) from None
    with node_lock(folder, src.url):
        clear_partial(folder)
        if src.kind == "hf":
            return _fetch_hf(src, folder)
        return _fetch_fsspec(src, options, folder)


def _fetch_fsspec(src, options: dict[str, Any], folder: Path) -> Path:
    fs, root = _open(src, options)
    try:
        remote = _list(fs, root, src, options)
    except WeightsError as err:
        cached = complete(folder)
        if err.unreachable and cached:
            log.warning("%s; using the copy cached in %s", err, folder)
            return folder
        raise
    marker = read_marker(folder) or {"files": {}}
    if marker.get("complete") and _same(marker["files"], remote) and complete(folder):
        return folder  # nothing to download
    recorded = marker["files"]
    kept = {rel: recorded[rel] for rel, entry in remote.items() if _have(folder, rel, recorded.get(rel), entry)}
    todo = sorted(set(remote) - set(kept))
    _check_space(folder, src, sum(remote[rel]["size"] for rel in todo))
    if marker.get("complete"):
        write_marker(folder, {**marker, "complete": False})  # files are about to change under it
    journal = {"source": src.url, "complete": False, "files": kept}
    started = time.monotonic()
    for rel in todo:
        full, entry = f"{root}/{rel}", remote[rel]
        try:
            digest = place(folder, rel, partial(_get, fs, full), entry["size"])
        except (OSError, ValueError) as exc:
            raise _describe(exc, src, options, f"downloading {rel}") from None
        journal["files"][rel] = {**entry, "sha256": digest}
        write_marker(folder, journal)  # progress survives an interruption
    remove_strays(folder, set(remote))
    clear_partial(folder)
    journal["complete"] = True
    write_marker(folder, journal)  # last: its presence means every file is whole
    size_mb = sum(remote[rel]["size"] for rel in todo) / 1e6
    log.info("fetched %d file(s) of %s (%.1f MB) into %s in %.1f s", len(todo), src.url, size_mb, folder,
             time.monotonic() - started)  # fmt: skip
    return folder


def _have(folder: Path, rel: str, recorded: dict | None, entry: dict) -> bool:
    """An earlier (maybe interrupted) fetch left this file whole and the source has not changed it."""
    local = folder / rel
    if not recorded or not _same({rel: recorded}, {rel: entry}):
        return False
    return local.is_file() and local.stat().st_size == entry["size"]


def _check_space(folder: Path, src, needed: int) -> None:
    """Refuse up front rather than fill the disk and fail on the last file (needed: an upper bound)."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WeightsError(
            f"weights {src.url}: needs {needed / 1e9:.2f} GB in {folder}, only {free / 1e9:.2f} GB free; {CACHE_FIX}"
        )


def _open(src, options: dict[str, Any]):
    try:
        fs, root = open_fs(src.location, options)
    except ValueError as exc:
        raise WeightsError(f"weights {src.url}: {exc}; check the URL and model.storage_options") from None
    return fs, root.rstrip("/")


def _list(fs, root: str, src, options: dict[str, Any]) -> dict[str, dict]:
    """{relative name: {size, etag}} of the files Bark needs under root, from one bounded listing."""
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(root)
    # fsspec's sync wrapper takes `timeout` for async filesystems (s3fs, gcsfs...) and cancels the call.
    kwargs = {"timeout": LISTING_TIMEOUT_S} if getattr(fs, "async_impl", False) else {}
    try:
        found = fs.find(root, detail=True, **kwargs)
    except Exception as exc:  # filesystems raise many types; _describe names the cause
        raise _describe(exc, src, options, "listing") from None
    prefix = root + "/"
    infos = {path[len(prefix) :]: info for path, info in found.items() if path.startswith(prefix)}
    if not infos:
        raise WeightsError(f"weights {_where(src, options)}: nothing there; check the bucket and prefix "
                           "(the URL must name the folder that holds the weight files)")  # fmt: skip
    try:
        _, names = bark_files(infos)
    except NoBarkWeights as exc:
        raise WeightsError(f"weights {_where(src, options)}: {exc}") from None
    return {n: {"size": int(infos[n]["size"]), "etag": _version(infos[n])} for n in names}


def _version(info: dict) -> str | None:
    for key in VERSION_KEYS:
        if info.get(key):
            return str(info[key]).strip('"')
    return None


def _same(recorded: dict[str, dict], remote: dict[str, dict]) -> bool:
    """The cache holds what the source lists now: same names, sizes and (where given) etags."""
    if set(recorded) != set(remote):
        return False
    return all(recorded[n].get("size") == e["size"] and recorded[n].get("etag") == e["etag"] for n, e in remote.items())


def _get(fs, remote_path: str, local_path: str) -> None:
    retry(fs.get_file, remote_path, local_path)


def _describe(exc: BaseException, src, options: dict[str, Any], doing: str) -> WeightsError:
    """One line for a storage failure: which URL, what went wrong, what to check."""
    name = type(exc).__name__
    first = (str(exc).splitlines() or [""])[0][:200]
    where = _where(src, options)
    if "Timeout" in name or isinstance(exc, TimeoutError):
        bound = f" within {LISTING_TIMEOUT_S:.0f} s" if doing == "listing" else ""
        return WeightsError(f"weights {where}: no answer{bound} while {doing}; {ENDPOINT_FIX}", True)
    if "EndpointConnection" in name or "ConnectError" in name or isinstance(exc, ConnectionError):
        detail = "" if "(endpoint " in where else f" ({first})"  # botocore's text repeats the whole request URL
        return WeightsError(f"weights {where}: cannot connect while {doing}{detail}; {ENDPOINT_FIX}", True)
    if isinstance(exc, PermissionError) or "Credentials" in name or "AccessDenied" in first:
        return WeightsError(f"weights {where}: access denied while {doing} ({name}: {first}); {ACCESS_FIX}")
    if isinstance(exc, FileNotFoundError):
        return WeightsError(f"weights {where}: bucket or prefix not found while {doing} ({first}); check the URL")
    return WeightsError(f"weights {where}: {doing} failed ({name}: {first}); {ENDPOINT_FIX}, then run again")


def _where(src, options: dict[str, Any]) -> str:
    """The URL, and for S3 the endpoint it goes to (the usual culprit when a bucket seems missing)."""
    endpoint = endpoint_of(options) if src.location.lower().startswith(("s3://", "s3a://")) else None
    return src.url + (f" (endpoint {endpoint})" if endpoint else "")


def _fetch_hf(src, folder: Path) -> Path:
    """The Hub: a dry run lists the revision's files, then snapshot_download fetches only Bark's."""
    cached = complete(folder)
    if cached:
        return folder  # a branch is resolved once per node; pin @commit or delete the folder to refresh
    from huggingface_hub import snapshot_download  # ~0.2 s: only hf:// sources pay it

    try:
        if "dry_run" in inspect.signature(snapshot_download).parameters:
            listing = snapshot_download(src.location, revision=src.revision, dry_run=True)
            commit = listing[0].commit_hash if listing else src.revision
            sizes = {f.filename: f.file_size for f in listing}
            _, names = bark_files(sizes)
            snapshot_download(src.location, revision=commit, local_dir=folder, allow_patterns=names)
        else:  # an older huggingface_hub (pyproject allows it) has no dry runs: `weights download`'s patterns
            commit = src.revision
            snapshot_download(src.location, revision=commit, local_dir=folder, allow_patterns=HF_LAYOUT_FILES)
            found = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
            _, names = bark_files(n for n in found if not n.startswith(OWN_NAMES))
            sizes = dict.fromkeys(names)
    except NoBarkWeights as exc:
        raise WeightsError(f"weights {src.url}: {exc}") from None
    except Exception as exc:  # the Hub client raises many types; _describe_hf names the cause
        raise _describe_hf(exc, src) from None
    files = {}
    for name in names:
        path = folder / name
        if not path.is_file() or (sizes[name] is not None and path.stat().st_size != sizes[name]):
            raise WeightsError(f"weights {src.url}: {name} did not arrive whole; check the network and run again")
        files[name] = {"size": path.stat().st_size, "etag": None}
    marker = {"source": src.url, "revision": src.revision, "commit": commit, "complete": True, "files": files}
    write_marker(folder, marker)
    return folder


def _describe_hf(exc: BaseException, src) -> WeightsError:
    name = type(exc).__name__
    first = (str(exc).splitlines() or [""])[0][:200]
    if name == "RevisionNotFoundError":
        return WeightsError(
            f"weights {src.url}: revision {src.revision!r} not found; give a branch, tag or commit of the repo"
        )
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return WeightsError(
            f"weights {src.url}: repository not found or not accessible ({name}); check owner/repo, "
            "accept its terms on the Hub if it is gated, and log in (`hf auth login` or HF_TOKEN)"
        )
    return WeightsError(
        f"weights {src.url}: the Hub could not be reached or refused ({name}: {first}); check the network "
        "(or HF_ENDPOINT / HF_HUB_OFFLINE), or copy the weights to a folder or bucket",
        unreachable=True,
    )
