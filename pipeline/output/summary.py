"""summary.json, its one writer: "running" until the run ends, then a verdict with an exit code (or "failed").

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

from pipeline.config import content_hash, public_dict
from pipeline.output.layout import SUMMARY
from pipeline.output.orphans import remove_orphans
from pipeline.output.read import Latest, read_committed_latest
from pipeline.storage import Store

log = logging.getLogger(__name__)
RUNNING, FINAL, FAILED = "running", "final", "failed"
ACCOUNTED_EXIT = 0
ACCOUNTING_EXIT = 3  # rows missing or doubled: the output cannot be trusted as it is
MISSING_SHOWN = 5  # ids named in the verdict line; summary.json lists more
MISSING_LISTED = 20  # ids summary.json lists under missing_ids


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus 8 random hex digits."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def write_running_summary(store: Store, run_id: str, cfg_public: dict, started_at: datetime | None = None,
                          content_hash: str | None = None) -> dict:  # fmt: skip
    """Replace summary.json with a "running" marker; returns what was written.

    cfg_public: config.public_dict(cfg) (already redacted). content_hash: the settings the rows are made
    with, kept readable while a run is in progress or after it crashed.
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


def mark_failed(store: Store, run_id: str, code: int, line: str) -> dict | None:
    """A run failed after writing its running marker: temp files go, summary.json becomes state "failed".

    code, line: the exit code and the line the user is shown (pipeline.errors.failure of the error).
    Best effort, on an output that may be full or read-only: what cannot be written is logged, and
    the user still gets the error line. Returns the summary written, or None.
    """
    try:
        # Removing temp files frees what a full disk needs for summary.json; audio waits for the next run.
        swept = remove_orphans(store, [], temp_only=True, when="after the failure")
        return write_failed_summary(store, run_id, code, line, read_committed_latest(store), swept.record())
    except Exception as err:
        log.warning("%s could not be marked failed (%s: %s)", SUMMARY, type(err).__name__, err)
        return None


def write_failed_summary(store: Store, run_id: str, exit_code: int, reason: str, committed: Latest | None = None,
                         orphans: dict | None = None) -> dict:  # fmt: skip
    """The running marker made final: state "failed", exit_code, the one-line reason, and what all runs
    have committed (committed: read_committed_latest's view; it stays and is resumed from)."""
    summary = (read_summary(store) or {}) | {
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


def read_summary(store: Store) -> dict | None:
    """summary.json as the last run left it, or None when there is none (or it cannot be parsed)."""
    try:
        summary = json.loads(store.read(SUMMARY))
    except (FileNotFoundError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def read_state(store: Store) -> str | None:
    """summary.json's state: "running", "final", "failed", None for none or a summary without a state."""
    return (read_summary(store) or {}).get("state")


def verdict(total_input: int | Collection[str], latest: Latest, manifest_errors: int = 0) -> tuple[int, str]:
    """(exit code, one line): 0 when every input row is exactly once ok or an error, else ACCOUNTING_EXIT.

    total_input: the number of input rows, or their ids (then committed ids outside the input are
    ignored and missing ones are named). latest: read_committed_latest's view. manifest_errors: rows
    rejected before the run (null or repeated ids).
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
        sample = latest.duplicate_ids[:MISSING_SHOWN]
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


def finish_summary(prep, totals, wall_s: float, committed: Latest, run_id: str | None = None,
                   orphans: dict | None = None, view: dict | None = None) -> dict:  # fmt: skip
    """Check that every input row is accounted for exactly once, write summary.json (state "final"), return it.

    prep: the run's batch.run.Prepared (ids, manifest errors, resume plan, config); totals: its
    Progress. committed: read_committed_latest's view after the run. `exit_code` and `verdict` are
    verdict's: non-zero when rows are missing or recorded twice. orphans: what each clean-up
    removed ({"start": Sweep.record(), "end": ...}, see output/orphans.py). view: rows per folder of the
    published view and history (output/publish.py's Published.rows).
    """
    valid = {i for i in prep.ids if isinstance(i, str) and i not in prep.excluded}
    ok = valid & set(committed.ok)
    row_errors = {i for i, _ in committed.errors if i in valid} - ok
    missing = sorted(valid - ok - row_errors)
    audio_total = sum(committed.ok[i] or 0.0 for i in ok)
    actors = prep.config.compute.max_actors
    code, line = verdict(valid, committed, len(prep.manifest_errors))
    summary = {
        "state": FINAL,
        "run_id": run_id,
        "input_rows": len(prep.ids),
        "ok": len(ok),
        "errors": len(row_errors) + len(prep.manifest_errors),
        "manifest_errors": len(prep.manifest_errors),
        "accounted": code == 0,
        "exit_code": code,
        "verdict": line,
        "missing_ids": missing[:MISSING_LISTED],
        "duplicate_metadata_rows": committed.duplicate_ok,
        "orphans_removed": orphans or {},
        "view": dict(sorted((view or {}).items())),
        "resume": {
            "kept": prep.resume.done,
            "kept_errors": prep.resume.kept_errors,
            "redone_changed": len(prep.resume.redo_changed),
            "retried_errors": len(prep.resume.retry),
            "redone_chosen": len(prep.resume.redo_chosen),
        },
        "this_run": {
            "rows": totals.ok + totals.errors,
            "ok": totals.ok,
            "flagged": totals.flagged,
            "errors": totals.errors,
            "skipped_already_done": len(prep.resume.skip & valid),
            "audio_s": round(totals.audio_s, 3),
            "wall_s": round(wall_s, 3),
            "rows_per_s": round((totals.ok + totals.errors) / wall_s, 4) if wall_s else 0.0,
            "audio_s_per_s": round(totals.audio_s / wall_s, 4) if wall_s else 0.0,
            "engine_s": round(totals.engine_s, 3),
            # Engine time is summed over actors working in parallel; divide to compare with wall time.
            "overhead_s": round(wall_s - totals.engine_s / actors, 3),
            "error_samples": totals.error_samples,
        },
        "audio_hours": round(audio_total / 3600, 6),
        "config_hash": prep.config_hash,
        "content_hash": content_hash(prep.config),
        "config": public_dict(prep.config),
    }
    prep.store.write(SUMMARY, json.dumps(summary, indent=2).encode())
    return summary
