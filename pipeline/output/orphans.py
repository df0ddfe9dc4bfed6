"""Orphans in an output: temp files of earlier attempts and audio files no committed metadata row points at.

Audio is written before the metadata part that names it is committed, so a run that dies (or
fails on a full disk) in between leaves audio nobody points at, and a writer killed mid-write
leaves its `.tmp-*` file. A run removes both while it alone writes the output: at its start,
after the lease is held and before its own writers start, and at its end, after every commit.
A failed run removes only temp files (a writer still finishing may yet commit what it wrote,
and deleting a temp file can at worst fail that writer's commit, never lose a committed file).

Only names of this output's own scheme go: `.tmp-<hex>-*` files, and audio keys
(layout.audio_key) whose stem is the file name of an id in the manifest or in metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.manifest.columns import safe_name
from pipeline.output.layout import AUDIO, ERRORS, HISTORY, METADATA, audio_stems, journal
from pipeline.output.read import committed_files
from pipeline.storage import Store, is_temp_name, retry

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """What one clean-up removed."""

    temp: int = 0  # temp files of earlier attempts (audio/, metadata/, errors/, history/, the journal)
    audio: int = 0  # audio files no committed metadata row points at

    @property
    def total(self) -> int:
        return self.temp + self.audio

    def record(self) -> dict:
        return {"temp_files": self.temp, "unreferenced_audio": self.audio}


def remove_orphans(store: Store, ids: list, *, temp_only: bool = False, when: str = "") -> Sweep:
    """Remove temp files and (unless temp_only) unreferenced audio; one listing per folder, one metadata read.

    ids: the manifest's ids (audio of other ids is not judged: its name may not be ours). when:
    words for the log line ("at the start", ...). Call only while no writer of this output runs.
    """
    audio = store.find(AUDIO)
    folders = (METADATA, ERRORS, HISTORY, journal(METADATA), journal(ERRORS))
    temp = [p for p in audio + [p for f in folders for p in store.find(f)] if is_temp_name(p)]
    store.remove_files(temp)
    out = Sweep(temp=len(temp))
    if not temp_only:
        unreferenced = _unreferenced(store, [p for p in audio if not is_temp_name(p)], ids)
        store.remove_files(unreferenced)
        out.audio = len(unreferenced)
    if out.total:
        log.info("removed %d orphan audio file(s) %s(%d temp file(s) of earlier attempts, %d audio file(s) no "
                 "metadata row points at)", out.total, f"{when} " if when else "", out.temp, out.audio)  # fmt: skip
    return out


def _unreferenced(store: Store, audio: list[str], ids: list) -> list[str]:
    """Audio keys of our scheme that no committed metadata row (view or journal) names; superseded rows name
    their copies under history/."""
    if not audio:
        return []
    committed = _read_audio_paths(store, committed_files(store, METADATA))
    listed = pa.array(audio, pa.string())
    # Matched in Arrow: at a million rows, Python sets of every key and name cost seconds and a GB.
    named = committed["audio_path"].combine_chunks()
    candidates = listed.filter(pc.invert(pc.is_in(listed, value_set=named))).to_pylist()
    if not candidates:  # the usual case: every audio file is some row's
        return []
    known = {safe_name(i) for i in [*ids, *committed["id"].to_pylist()] if isinstance(i, str)}
    return [k for k in candidates if any(s in known for s in audio_stems(k))]


def _read_audio_paths(store: Store, parts: list[str]) -> pa.Table:
    """The id and audio_path columns of these metadata files (full paths), read as one dataset."""
    schema = pa.schema([("id", pa.string()), ("audio_path", pa.string())])
    if not parts:
        return schema.empty_table()

    def read():
        return pads.dataset(parts, schema=schema, format="parquet", filesystem=store.fs).to_table()

    return retry(read, budget_s=store.retry_s, what=store.path(METADATA))
