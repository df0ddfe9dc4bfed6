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
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import content_hash, public_dict
from pipeline.output.layout import SUMMARY
from pipeline.output.orphans import remove_orphans
from pipeline.output.read import DURATION, ID, Latest, read_committed_latest
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
        summary["committed"] = {"ok": committed.ok_count, "errors": committed.error_count}
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
    got = Accounting.of(latest, None if isinstance(total_input, int) else total_input)
    return judge(got, latest, total_input if isinstance(total_input, int) else None, manifest_errors)


def judge(got: Accounting, latest: Latest, total_input: int | None, manifest_errors: int) -> tuple[int, str]:
    """verdict's answer from counts already made (total_input None: got counted against the input's ids)."""
    expected = total_input if total_input is not None else got.valid + manifest_errors
    accounted = got.ok + got.errors + manifest_errors
    counts = f"{got.ok} ok + {got.errors + manifest_errors} errors of {expected} input rows"
    problems = []
    if latest.duplicate_ok:
        sample = latest.duplicate_ids[:MISSING_SHOWN]
        named = f" (ids {', '.join(map(repr, sample))})" if sample else ""
        problems.append(
            f"{latest.duplicate_ok} duplicate record(s){named}, written twice at one revision: did two runs share "
            "this output?"
        )
    if got.missing:
        more = " ..." if got.missing_count > MISSING_SHOWN else ""
        shown = ", ".join(map(repr, got.missing[:MISSING_SHOWN])) + more
        problems.append(f"{got.missing_count} missing ({shown}): rerun to resume them")
    elif accounted < expected:
        problems.append(f"{expected - accounted} missing: rerun to resume them")
    elif accounted > expected:
        problems.append(f"{accounted - expected} more than the input")
    if problems:
        return ACCOUNTING_EXIT, f"NOT accounted: {counts}; {'; '.join(problems)}"
    return ACCOUNTED_EXIT, f"accounted: {counts}"


@dataclass
class Accounting:
    """The committed ids counted against the input's, in Arrow (a million ids stay columns, not sets)."""

    ok: int  # ids whose newest record is ok (of the input's, when its ids are given)
    errors: int  # ids whose newest record is an error and that are not ok
    audio_s: float  # duration_s summed over the ok ones
    valid: int = 0  # distinct input ids
    missing_count: int = 0
    missing: list = field(default_factory=list)  # the first MISSING_LISTED missing ids, sorted

    @classmethod
    def of(cls, latest: Latest, ids: Iterable[str] | None) -> Accounting:
        """ids: the input's ids (None: count every committed id)."""
        ok = latest.ok_table()
        errors = latest.error_ids()
        errors = errors.filter(pc.invert(pc.is_in(errors, value_set=ok[ID].combine_chunks())))
        if ids is None:
            return cls(ok.num_rows, len(errors), pc.sum(ok[DURATION]).as_py() or 0.0)
        valid = pc.unique(pa.array(list(ids), pa.string()))
        ok = ok.filter(pc.is_in(ok[ID], value_set=valid))
        errors = errors.filter(pc.is_in(errors, value_set=valid))
        done = pa.chunked_array([ok[ID].combine_chunks(), errors], pa.string()).combine_chunks()
        missing = valid.filter(pc.invert(pc.is_in(valid, value_set=done)))
        listed = missing.take(pc.sort_indices(missing)[:MISSING_LISTED]).to_pylist()
        return cls(ok.num_rows, len(errors), pc.sum(ok[DURATION]).as_py() or 0.0, len(valid), len(missing), listed)


def finish_summary(prep, totals, wall_s: float, committed: Latest, run_id: str | None = None,
                   orphans: dict | None = None, view: dict | None = None) -> dict:  # fmt: skip
    """Check that every input row is accounted for exactly once, write summary.json (state "final"), return it.

    prep: the run's batch.run.Prepared (ids, manifest errors, resume plan, config); totals: its
    Progress. committed: read_committed_latest's view after the run. `exit_code` and `verdict` are
    verdict's: non-zero when rows are missing or recorded twice. orphans: what each clean-up
    removed ({"start": Sweep.record(), "end": ...}, see output/orphans.py). view: rows per folder of the
    published view and history (output/publish.py's Published.rows).
    """
    valid = [i for i in prep.ids if isinstance(i, str) and i not in prep.excluded]
    got = Accounting.of(committed, valid)
    actors = prep.config.compute.max_actors
    code, line = judge(got, committed, None, len(prep.manifest_errors))
    summary = {
        "state": FINAL,
        "run_id": run_id,
        "input_rows": len(prep.ids),
        "ok": got.ok,
        "errors": got.errors + len(prep.manifest_errors),
        "manifest_errors": len(prep.manifest_errors),
        "accounted": code == 0,
        "exit_code": code,
        "verdict": line,
        "missing_ids": got.missing,
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
            "skipped_already_done": len(prep.resume.skip),
            "audio_s": round(totals.audio_s, 3),
            "wall_s": round(wall_s, 3),
            "rows_per_s": round((totals.ok + totals.errors) / wall_s, 4) if wall_s else 0.0,
            "audio_s_per_s": round(totals.audio_s / wall_s, 4) if wall_s else 0.0,
            "engine_s": round(totals.engine_s, 3),
            # Engine time is summed over actors working in parallel; divide to compare with wall time.
            "overhead_s": round(wall_s - totals.engine_s / actors, 3),
            "error_samples": totals.error_samples,
        },
        "audio_hours": round(got.audio_s / 3600, 6),
        "config_hash": prep.config_hash,
        "content_hash": content_hash(prep.config),
        "config": public_dict(prep.config),
    }
    prep.store.write(SUMMARY, json.dumps(summary, indent=2).encode())
    return summary
