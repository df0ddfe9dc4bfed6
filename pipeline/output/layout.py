"""The output folder's one map: every folder, dot-file, part and audio name a run writes there.

    OUTPUT/
      .barkpipe-output        marker: barkpipe wrote here, so `output.overwrite` may clear it
      .barkpipe-lease         the one writer's lease (output/lease.py)
      summary.json            "running" while a run holds the lease, then its verdict (output/summary.py)
      metadata/part-<digest>.parquet   one committed row per done id and revision
      errors/part-<digest>.parquet     one row per id whose attempt failed
      audio/<safe id>.<fmt>            revision 0; a redo's audio is audio/r<n>/<safe id>.<fmt>

Nothing else in the code spells these names: import them from here.
"""

from __future__ import annotations

MARKER = ".barkpipe-output"
LEASE = ".barkpipe-lease"
SUMMARY = "summary.json"
PROBE_PREFIX = ".barkpipe-probe-"  # `validate`'s write probe, removed right after
AUDIO, METADATA, ERRORS = "audio", "metadata", "errors"
RESULT_DIRS = (AUDIO, METADATA, ERRORS)
OWNED = (*RESULT_DIRS, SUMMARY)  # what `output.overwrite` clears (only below a MARKER)
PART_GLOB = "part-*.parquet"
