"""The output folder's one map: every folder, dot-file, part and audio name a run writes there.

    OUTPUT/
      .barkpipe-output        marker: barkpipe wrote here, so `output.overwrite` may clear it
      .barkpipe-lease         the one writer's lease (output/lease.py)
      summary.json            "running" while a run holds the lease, then its verdict (output/summary.py)
      metadata/part-<digest>.parquet   one committed row per done id and revision
      errors/part-<digest>.parquet     one row per id whose attempt failed
      errors/manifest-<digest>.parquet the current manifest's rejected rows (null or repeated ids)
      audio/<safe id>.<fmt>            revision 0; a redo's audio is audio/r<n>/<safe id>.<fmt>

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
OWNED = (*RESULT_DIRS, SUMMARY)  # what `output.overwrite` clears (only below a MARKER)
PART_PREFIX = "part-"  # a block's committed rows; the run's own manifest errors are MANIFEST_PREFIX parts
MANIFEST_PREFIX = "manifest-"
PART_SUFFIX = ".parquet"
PART_DIGEST_CHARS = 24  # 96 bits of sha256 over a block's ids: parts of different blocks never share a name
AUDIO_DIGEST_CHARS = 16  # 64 bits of sha256: a clash needs ~4e9 versions of one row's audio
FORMATS = ("wav", "flac", "ogg", "mp3", "opus")  # output.format's choices: any of them may be in audio/
# audio_key's names, at revision 0 or in a redo's `r<n>/` folder (audio_name), content-named or not.
_AUDIO_KEY = re.compile(rf"^{AUDIO}/(?:r[1-9][0-9]*/)?(?P<stem>[^/]+)\.(?:{'|'.join(FORMATS)})$")
_AUDIO_DIGEST = re.compile(rf"-[0-9a-f]{{{AUDIO_DIGEST_CHARS}}}$")


def part_name(kind: str, keys: list[str], prefix: str = PART_PREFIX) -> str:
    """`<kind>/part-<digest>.parquet`: the digest covers the keys, so a retried block finds its own part."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:PART_DIGEST_CHARS]
    return f"{kind}/{prefix}{digest}{PART_SUFFIX}"


def part_glob(kind: str, prefix: str = PART_PREFIX) -> str:
    """The glob of kind's committed parts (METADATA or ERRORS), relative to the output root."""
    return f"{kind}/{prefix}*{PART_SUFFIX}"


def is_part(rel: str, kind: str) -> bool:
    """True for the key of a committed part of kind (relative to the root), not a temp file beside it."""
    head, _, name = rel.rpartition("/")
    return head == kind and name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)


def part_keys(ids: list[str], revisions: list[int]) -> list[str]:
    """What part_name digests: the ids, with "@revision" for redone rows (revision-0 names stay as they were).

    A block retried by Ray finds its own part; a redo of the same ids gets a new part.
    """
    return [i if r == 0 else f"{i}@{r}" for i, r in zip(ids, revisions, strict=True)]


def audio_name(safe_name: str, audio_format: str, revision: int = 0) -> str:
    """A row's file name under audio/; a redo writes beside the old file, never over it.

    Revision r > 0 goes in a folder `r<r>/`: a safe name never holds "/", so no id at revision 0
    can spell it (a suffix like ".r1" could: "a.r1" is a safe id).
    """
    return f"{safe_name}.{audio_format}" if revision == 0 else f"r{revision}/{safe_name}.{audio_format}"


def audio_key(name: str, fmt: str, data: bytes | None = None) -> str:
    """`audio/<name>.<fmt>`, or with data the content-named `audio/<name>-<digest>.<fmt>`."""
    if data is None:
        return f"{AUDIO}/{name}.{fmt}"
    return f"{AUDIO}/{name}-{hashlib.sha256(data).hexdigest()[:AUDIO_DIGEST_CHARS]}.{fmt}"


def audio_stems(key: str) -> tuple[str, ...]:
    """The file-name stems (manifest.safe_name of an id) an audio key may belong to; () if it is not one
    of ours. `a-<16 hex>.wav` is the content-named file of `a` or, for an id spelled so, its own file."""
    match = _AUDIO_KEY.match(key)
    if match is None:
        return ()
    stem = match["stem"]
    return (stem, stem[: -AUDIO_DIGEST_CHARS - 1]) if _AUDIO_DIGEST.search(stem) else (stem,)
