"""Audio keys that never change meaning: a file, once written, holds the bytes its metadata describes.

A row's audio goes to `audio/<shard>/<name>.<fmt>` (layout.audio_name) with a create-only write. If
that key is taken (an orphan of a crashed run, an overlapping run) the file there is left alone and
the audio goes to `audio/<shard>/<name>-<sha256 of the bytes>.<fmt>` instead, also create-only. A
content-named file can only ever hold those bytes, so whichever key the metadata records, the
bytes behind it are the ones that were described.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pipeline.output.layout import audio_key
from pipeline.storage import Store

WRITE_THREADS = 8  # create-only puts are one request each; overlap them like s3fs' pipe does


def commit_audio(store: Store, name: str, data: bytes, fmt: str) -> str:
    """Write one row's audio create-only under name (audio_name's path less its extension, shard folder
    included: a local store makes the folder); the key (relative to the output root) it now lives under."""
    key = audio_key(name, fmt)
    if store.commit(key, data):
        return key
    # Taken: by older bytes, or by ours from a retried request. Never replaced either way.
    content_key = audio_key(name, fmt, data)
    store.commit(content_key, data)  # False: the same bytes are already there (content-named)
    return content_key


def commit_audio_many(store: Store, items: dict[str, bytes], fmt: str) -> dict[str, str]:
    """commit_audio for {name: bytes} in parallel; {name: key written}."""
    if not items:
        return {}
    names = list(items)
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(names))) as pool:
        keys = list(pool.map(lambda n: commit_audio(store, n, items[n], fmt), names))
    return dict(zip(names, keys, strict=True))
