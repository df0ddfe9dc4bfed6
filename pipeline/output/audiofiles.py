"""Audio keys that never change meaning: a file, once written, holds the bytes its metadata describes.

A row's audio goes to `audio/<name>.<fmt>` with a create-only write. If that name is taken (an
orphan of a crashed run, an overlapping run, a redo of the row) the file there is left alone and
the audio goes to `audio/<name>-<sha256 of the bytes>.<fmt>` instead, also create-only. A
content-named file can only ever hold those bytes, so whichever key the metadata records, the
bytes behind it are the ones that were described.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

from pipeline.storage import Store

AUDIO = "audio"
DIGEST_CHARS = 16  # 64 bits of sha256: a clash needs ~4e9 versions of one row's audio
WRITE_THREADS = 8  # create-only puts are one request each; overlap them like s3fs' pipe does
FORMATS = ("wav", "flac", "ogg", "mp3", "opus")  # output.format's choices: any of them may be in audio/
# audio_key's names, at revision 0 or in a redo's `r<n>/` folder (resume.audio_name), content-named or not.
_KEY = re.compile(rf"^{AUDIO}/(?:r[1-9][0-9]*/)?(?P<stem>[^/]+)\.(?:{'|'.join(FORMATS)})$")
_DIGEST = re.compile(rf"-[0-9a-f]{{{DIGEST_CHARS}}}$")


def audio_key(name: str, fmt: str, data: bytes | None = None) -> str:
    """`audio/<name>.<fmt>`, or with data the content-named `audio/<name>-<digest>.<fmt>`."""
    if data is None:
        return f"{AUDIO}/{name}.{fmt}"
    return f"{AUDIO}/{name}-{hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]}.{fmt}"


def audio_stems(key: str) -> tuple[str, ...]:
    """The file-name stems (manifest.safe_name of an id) an audio key may belong to; () if it is not one
    of ours. `a-<16 hex>.wav` is the content-named file of `a` or, for an id spelled so, its own file."""
    match = _KEY.match(key)
    if match is None:
        return ()
    stem = match["stem"]
    return (stem, stem[: -DIGEST_CHARS - 1]) if _DIGEST.search(stem) else (stem,)


def commit_audio(store: Store, name: str, data: bytes, fmt: str) -> str:
    """Write one row's audio create-only; the key (relative to the output root) it now lives under."""
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
    store.makedirs(AUDIO)
    names = list(items)
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(names))) as pool:
        keys = list(pool.map(lambda n: commit_audio(store, n, items[n], fmt), names))
    return dict(zip(names, keys, strict=True))
