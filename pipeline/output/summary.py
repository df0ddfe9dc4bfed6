"""Accounting you can trust: summary.json says "running" until the run ends, and a verdict with an exit code.

A run replaces summary.json with a running marker before it writes anything else, so a crashed
run never leaves the previous run's `accounted: true` behind; the final summary (state "final")
replaces the marker only at the end, or, when the run fails, the marker is made final as state
"failed" with the exit code and the line the user was shown. Only a killed driver leaves "running".
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Collection
from datetime import datetime, timezone

log = logging.getLogger(__name__)
SUMMARY = "summary.json"
RUNNING, FINAL, FAILED = "running", "final", "failed"
ACCOUNTED_EXIT = 0
ACCOUNTING_EXIT = 3  # rows missing or doubled: the output cannot be trusted as it is
MISSING_SHOWN = 5  # ids named in the verdict line; summary.json lists more


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus 8 random hex digits."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def write_running_summary(store, run_id: str, cfg_public: dict, started_at: datetime | None = None,
                          content_hash: str | None = None) -> dict:  # fmt: skip
    """Replace summary.json with a "running" marker; returns what was written.

    cfg_public: config.public_dict(cfg) (already redacted). content_hash keeps
    summary.previous_content_hash working while a run is in progress or after it crashed.
    """
    started_at = started_at or datetime.now(timezone.utc)
    marker = {
        "state": RUNNING,
        "run_id": run_id,
        "started_at": started_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "accounted": None,  # unknown until the run ends; never a stale true
        "content_hash": content_hash,
        "config": cfg_public,
    }
    store.write(SUMMARY, json.dumps(marker, indent=2).encode())
    return marker


def mark_failed(store, run_id: str, exc: BaseException) -> dict | None:
    """A run failed after writing its running marker: temp files go, summary.json becomes state "failed".

    Best effort, on an output that may be full or read-only: what cannot be written is logged, and
    the user still gets the error line. Returns the summary written, or None.
    """
    from pipeline.output.orphans import remove_orphans
    from pipeline.output.read import read_committed_latest
    from pipeline.cli.errors import failure

    code, line = failure(exc)
    try:
        # Removing temp files frees what a full disk needs for summary.json; audio waits for the next run.
        swept = remove_orphans(store, [], temp_only=True, when="after the failure")
        return write_failed_summary(store, run_id, code, line, read_committed_latest(store), swept.record())
    except Exception as err:
        log.warning("summary.json could not be marked failed (%s: %s)", type(err).__name__, err)
        return None


def write_failed_summary(store, run_id: str, exit_code: int, reason: str, committed=None,
                         orphans: dict | None = None) -> dict:  # fmt: skip
    """The running marker made final: state "failed", exit_code, the one-line reason, and what all runs
    have committed (committed: resume.read_committed_latest's view; it stays and is resumed from)."""
    try:
        marker = json.loads(store.read(SUMMARY))
    except (FileNotFoundError, ValueError):
        marker = {}
    summary = (marker if isinstance(marker, dict) else {}) | {
        "state": FAILED,
        "run_id": run_id,
        "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "accounted": False,
        "exit_code": exit_code,
        "error": reason,
        "verdict": f"failed: {reason}",
    }
    if committed is not None:
        summary["committed"] = {"ok": len(committed.ok), "errors": len(committed.errors)}
    if orphans is not None:
        summary["orphans_removed"] = {"after_failure": orphans}
    store.write(SUMMARY, json.dumps(summary, indent=2).encode())
    return summary


def read_state(store) -> str | None:
    """summary.json's state: "running", "final", "failed", None for none or an older summary without a state."""
    try:
        return json.loads(store.read(SUMMARY)).get("state")
    except (FileNotFoundError, ValueError):
        return None


def verdict(total_input: int | Collection[str], latest, manifest_errors: int = 0) -> tuple[int, str]:
    """(exit code, one line): 0 when every input row is exactly once ok or an error, else ACCOUNTING_EXIT.

    total_input: the number of input rows, or their ids (then committed ids outside the input are
    ignored and missing ones are named). latest: resume.read_committed_latest's view (or anything
    with ok, errors, duplicate_ok). manifest_errors: rows rejected before the run (null or repeated ids).
    """
    ok_ids = set(latest.ok)
    error_ids = {i for i, _ in latest.errors if i is not None} - ok_ids
    duplicates = latest.duplicate_ok
    missing: list = []
    if isinstance(total_input, int):
        expected = total_input
        accounted = len(ok_ids) + len(error_ids) + manifest_errors
    else:
        valid = set(total_input)
        expected = len(valid) + manifest_errors
        ok_ids, error_ids = ok_ids & valid, error_ids & valid
        missing = sorted(valid - ok_ids - error_ids)
        accounted = len(ok_ids) + len(error_ids) + manifest_errors
    counts = f"{len(ok_ids)} ok + {len(error_ids) + manifest_errors} errors of {expected} input rows"
    problems = []
    if duplicates:
        sample = getattr(latest, "duplicate_ids", [])[:MISSING_SHOWN]
        named = f" (ids {', '.join(map(repr, sample))})" if sample else ""
        problems.append(
            f"{duplicates} duplicate record(s){named}, written twice at one revision: did two runs share this output?"
        )
    if missing:
        shown = ", ".join(map(repr, missing[:MISSING_SHOWN])) + (" ..." if len(missing) > MISSING_SHOWN else "")
        problems.append(f"{len(missing)} missing ({shown}): rerun to resume them")
    elif accounted < expected:
        problems.append(f"{expected - accounted} missing: rerun to resume them")
    elif accounted > expected:
        problems.append(f"{accounted - expected} more than the input")
    if problems:
        return ACCOUNTING_EXIT, f"NOT accounted: {counts}; {'; '.join(problems)}"
    return ACCOUNTED_EXIT, f"accounted: {counts}"
