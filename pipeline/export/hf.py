"""Hugging Face Parquet shards: `data/<split>-00000-of-000NN.parquet` with an embedded Audio column."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.export.features import Columns
from pipeline.export.shards import ShardSize, Target

DATA = "data"
ROW_GROUP_ROWS = 100  # rows buffered per Parquet row group (what `datasets` uses for audio)
ROW_GROUP_BYTES = 64 * 2**20  # ...or fewer, once their audio adds up to this


def shard_name(split: str, index: int, total: int) -> str:
    """The Hub's shard naming, which `load_dataset` maps to splits by itself."""
    return f"{DATA}/{split}-{index:05d}-of-{total:05d}.parquet"


@dataclass
class _Open:
    """The shard being written for one split, and the rows waiting for its next row group."""

    index: int
    path: str
    writer: object
    rows: int = 0
    bytes: int = 0
    pending: list = field(default_factory=list)
    pending_bytes: int = 0


class HfWriter:
    """Rows in, Parquet shards out: one open shard per split, at most a row group of audio in memory.

    A shard's final name needs the split's shard count, so closed shards are staged and named
    by `close()`, once every row has been written.
    """

    def __init__(self, target: Target, cols: Columns, size: ShardSize, say: Callable[[str], None]):
        self.target, self.cols, self.size, self.say = target, cols, size, say
        self._open: dict[str, _Open] = {}
        self._staged: dict[str, list[tuple[str, int]]] = {}  # split -> (staged name, rows) per shard
        self.bytes: dict[str, int] = {}  # split -> audio bytes written

    def add(self, split: str, rec: dict) -> None:
        audio_bytes = len(rec["audio"]["bytes"])
        shard = self._open.get(split)
        if shard is not None and self.size.full(shard.rows, shard.bytes, audio_bytes):
            self._close(split)
            shard = None
        if shard is None:
            shard = self._start(split)
        shard.pending.append(rec)
        shard.rows += 1
        shard.bytes += audio_bytes
        shard.pending_bytes += audio_bytes
        self.bytes[split] = self.bytes.get(split, 0) + audio_bytes
        if len(shard.pending) >= ROW_GROUP_ROWS or shard.pending_bytes >= ROW_GROUP_BYTES:
            self._flush(shard)

    def close(self) -> dict[str, list[tuple[str, int]]]:
        """Close every shard and give each its final name; returns split -> [(file, rows)]."""
        for split in list(self._open):
            self._close(split)
        written: dict[str, list[tuple[str, int]]] = {}
        for split, shards in sorted(self._staged.items()):
            for index, (staged, rows) in enumerate(shards):
                rel = shard_name(split, index, len(shards))
                self.target.commit_staged(staged, rel)
                written.setdefault(split, []).append((rel, rows))
        return written

    def _start(self, split: str) -> _Open:
        index = len(self._staged.get(split, []))
        path = self.target.temp_path(f"{split}-{index:05d}.parquet")
        # No statistics on the audio bytes (min/max of MBs of binary would bloat every footer).
        writer = pq.ParquetWriter(path, self.cols.schema, compression="zstd", write_statistics=["id"])
        shard = self._open[split] = _Open(index, path, writer)
        return shard

    def _flush(self, shard: _Open) -> None:
        if shard.pending:
            shard.writer.write_table(pa.Table.from_pylist(shard.pending, schema=self.cols.schema))  # type: ignore[attr-defined]
        shard.pending, shard.pending_bytes = [], 0

    def _close(self, split: str) -> None:
        shard = self._open.pop(split)
        self._flush(shard)
        shard.writer.close()  # type: ignore[attr-defined]
        staged = self.target.stage(shard.path)
        self._staged.setdefault(split, []).append((staged, shard.rows))
        self.say(f"shard {split} #{shard.index}: {shard.rows} rows, {shard.bytes / 1e6:.1f} MB of audio")
