"""Where Bark weights come from: parse a weights source and name its node-local cache folder."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.storage import redact_url

CACHE_ENV = "BARKPIPE_CACHE"  # node-local cache root; every actor on a node shares it
DEFAULT_CACHE = "~/.cache/barkpipe"
WEIGHTS_SUBDIR = "weights"  # the cache root may hold other things later
HF_SCHEME = "hf://"
HF_DEFAULT_REVISION = "main"
SLUG_CHARS = 48  # readable part of a cache folder name; the hash keeps names distinct
HASH_CHARS = 12
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
SOURCE_FORMS = "a local folder, an fsspec URL (s3://bucket/prefix) or hf://owner/repo[@revision]"


class WeightsError(ValueError):
    """Weights cannot be fetched; the message is one line naming the source and the fix."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable  # the endpoint did not answer (a complete cache may still serve)


@dataclass(frozen=True)
class Source:
    """A parsed weights source; `url` is safe to print (no credentials)."""

    kind: str  # "local" | "fsspec" | "hf"
    url: str
    location: str  # local: the folder; fsspec: the URL to open; hf: the repo id
    revision: str | None = None  # hf only: branch, tag or commit (None = the default branch)


def is_remote(source: str | os.PathLike) -> bool:
    """True for URLs that fetch_weights downloads (anything with a scheme except file://)."""
    text = str(source)
    return bool(_URL.match(text)) and not text.lower().startswith("file://")


def parse_source(source: str | os.PathLike) -> Source:
    """Classify a weights source without touching the network; WeightsError on malformed hf:// ids."""
    text = str(source).strip()
    if not text:
        raise WeightsError(f"weights source is empty; give {SOURCE_FORMS}")
    if text.lower().startswith("file://"):
        return Source("local", text, text[len("file://") :])
    if not is_remote(text):
        return Source("local", text, text)
    if text.lower().startswith(HF_SCHEME):
        repo, _, revision = text[len(HF_SCHEME) :].strip("/").partition("@")
        if not _HF_REPO.match(repo) or (revision == "" and "@" in text):
            raise WeightsError(
                f"weights {text!r}: expected hf://owner/repo or hf://owner/repo@revision "
                "(e.g. hf://suno/bark-small@main)"
            )
        return Source("hf", text, repo, revision or None)
    return Source("fsspec", redact_url(text), text)


def endpoint_of(storage_options: dict[str, Any]) -> str | None:
    """The S3 endpoint s3fs will talk to: options first, then the AWS_* environment (None = AWS itself)."""
    client = storage_options.get("client_kwargs") or {}
    return (
        storage_options.get("endpoint_url")
        or client.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def identity(source: Source, storage_options: dict[str, Any]) -> str:
    """What makes two sources the same download: the normalised URL, plus endpoint or revision."""
    if source.kind == "hf":
        hub = os.environ.get("HF_ENDPOINT", "")
        return f"hf://{source.location}@{source.revision or HF_DEFAULT_REVISION}|{hub}"
    scheme, _, rest = redact_url(source.location).partition("://")
    rest = re.sub(r"^\*\*\*@", "", rest).strip("/")  # credentials never change what is stored
    return f"{scheme.lower()}://{rest}|{endpoint_of(storage_options) or ''}"


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """cache_dir, else $BARKPIPE_CACHE, else ~/.cache/barkpipe."""
    root = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser()


def cache_folder(source: Source, storage_options: dict[str, Any], cache_dir: str | os.PathLike | None) -> Path:
    """One folder per source: a readable slug and a short hash, e.g. s3-bucket-bark-large-1a2b3c4d5e6f."""
    ident = identity(source, storage_options)
    readable = ident.split("|")[0].replace("://", "-")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", readable).strip("-.")[:SLUG_CHARS].rstrip("-.")
    digest = hashlib.sha256(ident.encode()).hexdigest()[:HASH_CHARS]
    return cache_root(cache_dir) / WEIGHTS_SUBDIR / f"{slug or 'weights'}-{digest}"
