"""WebDataset tar shards: `<split>-000000.tar`, each sample `<key>.<audio ext>` + `<key>.json`."""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.export.features import jsonable
from pipeline.export.shards import ShardSize, Target
from pipeline.manifest.columns import safe_name
from pipeline.output.schema import AUDIO

KEY_DIGEST_CHARS = 12  # as manifest.safe_name: distinct ids keep distinct keys
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
FILE_MODE = 0o644


def sample_key(row_id: str) -> str:
    """A tar key for an id: webdataset cuts a key at the first dot of the file name, so keys hold none.

    manifest.safe_name's name when it has no dot (distinct ids give distinct names), else a slug
    plus 12 hex of the id's sha256: kept names never end so (safe_name slugs such an id), so the
    two kinds cannot meet. The id itself is in the sample's json.
    """
    name = safe_name(row_id)
    if "." not in name:
        return name
    slug = _KEY_UNSAFE.sub("_", row_id).strip("_-")[:64] or "id"
    digest = hashlib.sha256(row_id.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_DIGEST_CHARS]
    return f"{slug}-{digest}"


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


@dataclass
class _Open:
    index: int
    path: str
    tar: tarfile.TarFile
    rows: int = 0
    bytes: int = 0


class WdsWriter:
    """Rows in, tar shards out; a shard is committed under its name as soon as it is full."""

    def __init__(self, target: Target, size: ShardSize, say: Callable[[str], None]):
        self.target, self.size, self.say = target, size, say
        self._open: dict[str, _Open] = {}
        self._count: dict[str, int] = {}  # split -> shards started
        self._written: dict[str, list[tuple[str, int]]] = {}
        self._keys: set[str] = set()
        self.bytes: dict[str, int] = {}

    def add(self, split: str, rec: dict) -> None:
        audio = rec[AUDIO]["bytes"]
        key = sample_key(rec["id"])
        assert key not in self._keys, f"two ids share the sample key {key!r}"  # sha256 prefixes collided
        self._keys.add(key)
        shard = self._open.get(split)
        if shard is not None and self.size.full(shard.rows, shard.bytes, len(audio)):
            self._close(split)
            shard = None
        if shard is None:
            shard = self._start(split)
        ext = posixpath.splitext(rec[AUDIO]["path"])[1].lstrip(".").lower() or "bin"
        meta = {k: v for k, v in rec.items() if k != AUDIO} | {"audio_file": rec[AUDIO]["path"]}
        body = json.dumps(jsonable(meta), sort_keys=True, ensure_ascii=False).encode("utf-8")
        _add(shard.tar, f"{key}.{ext}", audio)
        _add(shard.tar, f"{key}.json", body)
        shard.rows += 1
        shard.bytes += len(audio)
        self.bytes[split] = self.bytes.get(split, 0) + len(audio)

    def close(self) -> dict[str, list[tuple[str, int]]]:
        for split in list(self._open):
            self._close(split)
        return dict(sorted(self._written.items()))

    def _start(self, split: str) -> _Open:
        index = self._count.get(split, 0)
        self._count[split] = index + 1
        path = self.target.temp_path(shard_name(split, index))
        shard = self._open[split] = _Open(index, path, tarfile.open(path, "w", format=tarfile.PAX_FORMAT))
        return shard

    def _close(self, split: str) -> None:
        shard = self._open.pop(split)
        shard.tar.close()
        rel = shard_name(split, shard.index)
        self.target.put(shard.path, rel)
        self._written.setdefault(split, []).append((rel, shard.rows))
        self.say(f"shard {rel}: {shard.rows} rows, {shard.bytes / 1e6:.1f} MB of audio")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A member with fixed owner, mode and time, so the same rows give the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), FILE_MODE, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
