"""The output folder's one map: every folder, dot-file, part and audio name a run writes there.

    OUTPUT/
      .barkpipe-output        marker: barkpipe wrote here, so `output.overwrite` may clear it
      .barkpipe-lease         the one writer's lease (output/lease.py)
      summary.json            "running" while a run holds the lease, then its verdict (output/summary.py)
      .barkpipe-view.json     the published view: its files, and what the last publish still deletes
      .barkpipe-journal/metadata|errors/part-<digest>.parquet   workers' committed parts, not yet published
      metadata/view-<digest>.parquet   the current view: one row per done id (its newest revision)
      errors/view-<digest>.parquet     one row per id whose newest record is an error
      errors/manifest-<digest>.parquet the current manifest's rejected ids that have no record (null or repeated)
      history/metadata|errors/view-<digest>.parquet, history/<audio key>   superseded records and their audio
      metadata/part-*, errors/part-*   an older release's parts: journal parts until the first publish
      audio/<shard>/<safe id>.<fmt>    revision 0; a redo's audio is audio/<shard>/r<n>/<safe id>.<fmt>

Nothing else in the code spells these names: import them from here.
"""

from __future__ import annotations

import hashlib
import re

MARKER = ".barkpipe-output"
LEASE = ".barkpipe-lease"
SUMMARY = "summary.json"
PROBE_PREFIX = ".barkpipe-probe-"  # `validate`'s write probe, removed right after
AUDIO, METADATA, ERRORS = "audio", "metadata", "errors"
RESULT_DIRS = (AUDIO, METADATA, ERRORS)
JOURNAL = ".barkpipe-journal"  # workers' committed parts, not yet published into the view (output/publish.py)
VIEW_INDEX = ".barkpipe-view.json"  # the published view's files; its atomic write is a publish's commit point
HISTORY = "history"  # superseded records and their audio: history/metadata/, history/errors/, history/audio/
VIEW_PREFIX = "view-"  # a published (compacted) Parquet file of the view or of history, named by its digest
OWNED = (*RESULT_DIRS, HISTORY, JOURNAL, VIEW_INDEX, SUMMARY)  # what `output.overwrite` clears (only below a MARKER)
PART_PREFIX = "part-"  # a block's committed rows; the run's own manifest errors are MANIFEST_PREFIX parts
MANIFEST_PREFIX = "manifest-"
PART_SUFFIX = ".parquet"
PART_DIGEST_CHARS = 24  # 96 bits of sha256 over a block's ids: parts of different blocks never share a name
AUDIO_DIGEST_CHARS = 16  # 64 bits of sha256: a clash needs ~4e9 versions of one row's audio
# 256 folders under audio/ (as git's objects/): ~4k files each at a million rows, ~40k at ten million,
# while a small run still fills only as many folders as it has rows.
AUDIO_SHARD_CHARS = 2
FORMATS = ("wav", "flac", "ogg", "mp3", "opus")  # output.format's choices: any of them may be in audio/
# Every audio key ever written, content-named or not: audio_name's `<shard>/[r<n>/]<stem>`, and the flat
# `[r<n>/]<stem>` of outputs written before shards (still read, and their orphans still found).
_AUDIO_KEY = re.compile(
    rf"^{AUDIO}/(?:(?P<shard>[0-9a-f]{{{AUDIO_SHARD_CHARS}}})/)?(?:r[1-9][0-9]*/)?(?P<stem>[^/]+)"
    rf"\.(?:{'|'.join(FORMATS)})$"
)
_AUDIO_DIGEST = re.compile(rf"-[0-9a-f]{{{AUDIO_DIGEST_CHARS}}}$")


def part_name(kind: str, keys: list[str], prefix: str = PART_PREFIX) -> str:
    """`<kind>/part-<digest>.parquet`: the digest covers the keys, so a retried block finds its own part."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:PART_DIGEST_CHARS]
    return f"{kind}/{prefix}{digest}{PART_SUFFIX}"


def part_glob(kind: str, prefix: str = PART_PREFIX) -> str:
    """The glob of kind's committed parts (METADATA or ERRORS), relative to the output root."""
    return f"{kind}/{prefix}*{PART_SUFFIX}"


def journal(kind: str) -> str:
    """Where workers commit kind's parts (METADATA or ERRORS): a dot-folder that readers of kind/ skip."""
    return f"{JOURNAL}/{kind}"


def history(rel: str) -> str:
    """Where a superseded record or file goes: `history/<rel>` (a kind folder, or an audio key)."""
    return f"{HISTORY}/{rel}"


def view_name(folder: str, data: bytes) -> str:
    """`<folder>/view-<digest>.parquet`: a published file, named by a digest of its bytes."""
    return f"{folder}/{VIEW_PREFIX}{hashlib.sha256(data).hexdigest()[:PART_DIGEST_CHARS]}{PART_SUFFIX}"


def part_keys(ids: list[str], revisions: list[int]) -> list[str]:
    """What part_name digests: the ids, with "@revision" for redone rows (revision-0 names stay as they were).

    A block retried by Ray finds its own part; a redo of the same ids gets a new part.
    """
    return [i if r == 0 else f"{i}@{r}" for i, r in zip(ids, revisions, strict=True)]


def audio_name(safe_name: str, audio_format: str, revision: int = 0) -> str:
    """A row's path under audio/: `<shard>/<name>.<fmt>`; a redo writes beside the old file, never over it.

    Revision r > 0 goes in a folder `<shard>/r<r>/`: a safe name never holds "/", so no id at
    revision 0 can spell it (a suffix like ".r1" could: "a.r1" is a safe id).
    """
    folder = audio_shard(safe_name) if revision == 0 else f"{audio_shard(safe_name)}/r{revision}"
    return f"{folder}/{safe_name}.{audio_format}"


def audio_shard(safe_name: str) -> str:
    """The folder under audio/ of a row's files: the first hex digits of sha256 over its safe name.

    Hashed, so ids that share a prefix (row-000001, row-000002, ...) still spread evenly; over the
    safe name rather than the id (one per id, and the id itself when plain), so a key alone shows
    whether its folder fits its name (audio_stems).
    """
    return hashlib.sha256(safe_name.encode()).hexdigest()[:AUDIO_SHARD_CHARS]


def audio_key(name: str, fmt: str, data: bytes | None = None) -> str:
    """`audio/<name>.<fmt>` (name: audio_name's path less its extension), or with data the content-named
    `audio/<name>-<digest>.<fmt>`."""
    if data is None:
        return f"{AUDIO}/{name}.{fmt}"
    return f"{AUDIO}/{name}-{hashlib.sha256(data).hexdigest()[:AUDIO_DIGEST_CHARS]}.{fmt}"


def audio_stems(key: str) -> tuple[str, ...]:
    """The file-name stems (manifest.safe_name of an id) an audio key may belong to; () if it is not one
    of ours. `a-<16 hex>.wav` is the content-named file of `a` or, for an id spelled so, its own file;
    in a shard folder only the stems whose shard it is. Flat keys (before shards) have no folder to check."""
    match = _AUDIO_KEY.match(key)
    if match is None:
        return ()
    stem = match["stem"]
    stems = (stem, stem[: -AUDIO_DIGEST_CHARS - 1]) if _AUDIO_DIGEST.search(stem) else (stem,)
    return stems if match["shard"] is None else tuple(s for s in stems if audio_shard(s) == match["shard"])
