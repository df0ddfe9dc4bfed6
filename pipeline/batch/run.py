"""`barkpipe run`: manifest checks and resume, then read -> processor (prepare, engine, finish) -> commit -> summary."""

from __future__ import annotations

import gc
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.batch.guard import FrozenActorBreaker, ProgressLogger, data_context_settings, quiet_remote_args
from pipeline.batch.monitor import run_monitor
from pipeline.batch.plan import MANIFEST_HASHES, Redo, ResumePlan, hash_manifest, next_revisions, plan_resume
from pipeline.batch.session import ensure_ray, kill_actor, quiet_ray_console
from pipeline.batch.stages.read import read_rows
from pipeline.config import RunConfig, config_hash, config_secrets, content_hash, public_dict
from pipeline.errors import failure
from pipeline.manifest.columns import ID, TEXT, id_problems
from pipeline.manifest.read import ManifestInfo, inspect_manifest, read_ids
from pipeline.output.commit import manifest_error_view, write_manifest_errors
from pipeline.output.layout import RESULT_DIRS
from pipeline.output.lease import acquire_lease, clear_for_overwrite, mark_output
from pipeline.output.orphans import remove_orphans
from pipeline.output.publish import Published, publish
from pipeline.output.read import Latest, read_committed_latest
from pipeline.output.summary import finish_summary, mark_failed, new_run_id, write_running_summary
from pipeline.storage import Store
from pipeline.storagefaults import find_output_fault
from pipeline.weights import is_remote, parse_source

log = logging.getLogger(__name__)
# Small runs are cut into at least this many windows per engine actor, so finishing one window
# overlaps generating the next (one window per actor would finish everything after the last chunk).
MIN_WINDOWS_PER_ACTOR = 4
# Manifest rows per block as files are read (a chapter-per-row manifest is a few MB per 1,000 rows).
READ_BLOCK_ROWS = 1024
# Times a run resumes itself after losing an actor or node mid-execution (see execute_resuming).
RESUMES = 2


@dataclass
class Prepared:
    """What the driver works out before starting Ray: the manifest, the output and what is left to do."""

    config: RunConfig
    manifest: ManifestInfo
    store: Store
    ids: list
    excluded: set
    manifest_errors: list
    committed: Latest  # the newest committed record per id
    resume: ResumePlan
    config_hash: str

    @property
    def skip(self) -> pa.Array:
        """Ids the read stage drops: refused by the manifest checks (repeated ids) or left alone by resume."""
        refused = pa.array(sorted(i for i in self.excluded if isinstance(i, str)), pa.string())
        return pa.concat_arrays([refused, self.resume.skip])

    @property
    def todo(self) -> int:
        return self.resume.todo

    @cached_property
    def revisions(self) -> dict[str, int]:
        """id -> revision for the rows this run writes again (all others are written at revision 0)."""
        return next_revisions(self.committed, self.resume.redo)

    def window(self) -> int:
        """Rows per engine call; small runs get smaller windows so every actor has several to overlap."""
        c = self.config.compute
        return max(1, min(c.window_rows, math.ceil(max(self.todo, 1) / (c.max_actors * MIN_WINDOWS_PER_ACTOR))))


@dataclass
class Progress:
    """Totals gathered from the write stage's per-row summaries as they stream in."""

    ok: int = 0
    flagged: int = 0
    errors: int = 0
    audio_s: float = 0.0
    engine_s: float = 0.0
    error_samples: list = field(default_factory=list)

    def add(self, batch) -> int:
        rows = batch.to_pylist()
        for r in rows:
            if r["ok"]:
                self.ok += 1
                self.flagged += bool(r["flagged"])
                self.audio_s += r["duration_s"] or 0.0
                self.engine_s += r["engine_s"] or 0.0
            else:
                self.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{r['id']}: [{r['stage']}] {r['error']}")
        return len(rows)


def check_weights(cfg: RunConfig) -> None:
    """A local model.weights must be a folder here; a URL is fetched (and checked) on each node."""
    parse_source(cfg.model.weights)  # WeightsError (a ValueError) for a malformed hf:// id, before any node tries
    if not is_remote(cfg.model.weights) and not Path(cfg.model.weights).is_dir():
        raise FileNotFoundError(
            f"model.weights {cfg.model.weights!r} is not a directory; create tiny test weights with "
            f"`barkpipe weights make-random --size tiny --layout suno {cfg.model.weights}` or download real ones"
        )


def open_output(cfg: RunConfig) -> Store:
    try:
        return Store.open(cfg.output.path, cfg.output.storage_options, retry_s=cfg.output.retry_s)
    except TypeError as exc:  # s3fs checks its options only when it first connects
        raise ValueError(f"output.storage_options are not accepted: {exc}") from None


def prepare(cfg: RunConfig, *, retry_errors: bool = False, redo: Redo = None, store: Store | None = None) -> Prepared:
    """Everything up to (not including) Ray: manifest schema and ids, output state, what resume redoes.

    Row hashes of the whole manifest are computed only when the output already holds rows: a
    first run has nothing to compare them with.
    """
    info = inspect_manifest(cfg.input.path, cfg.input.storage_options, cfg.input.id_column, cfg.input.text_column)
    ids = read_ids(info)
    excluded, manifest_errors = id_problems(ids)
    store = store or open_output(cfg)
    try:
        committed = Latest() if cfg.output.overwrite else read_committed_latest(store)
    except TypeError as exc:
        raise ValueError(f"output.storage_options are not accepted: {exc}") from None
    if committed.done_count:
        manifest = hash_manifest(info, cfg)
        refused = pa.array([i for i in excluded if isinstance(i, str)], pa.string())
        manifest = manifest.filter(pc.invert(pc.is_in(manifest[ID], value_set=refused)))
    else:  # nothing to compare a row's hash with: every row is new
        valid = pa.array([i for i in ids if isinstance(i, str) and i not in excluded], pa.string())
        manifest = pa.table([valid, pa.nulls(len(valid), pa.string())], schema=MANIFEST_HASHES)
    plan = plan_resume(manifest, committed, retry_errors=retry_errors, redo=redo)
    return Prepared(cfg, info, store, ids, excluded, manifest_errors, committed, plan, config_hash(cfg))


def run(cfg: RunConfig, *, progress: bool = True, verbose: bool = False, engine_factory=None,
        retry_errors: bool = False, redo: Redo = None) -> dict:  # fmt: skip
    """Run the whole pipeline (resuming unless output.overwrite) and return the summary.

    One run at a time per output: the output's lease is taken first (OutputBusy when another live
    run holds it) and held, renewed, until the summary is written. verbose: Ray's own progress bars
    and worker logs. engine_factory: replaces the default engine loader in the engine actors (see
    processor.build_processor); benchmarks plug a stand-in in here. retry_errors / redo: see
    resume.plan_resume.

    A run that fails after its running marker makes summary.json final (state "failed", the exit
    code and line the user sees); a write that failed on a full, read-only or denied output, in
    the driver or in a Ray worker, is raised as the storagefaults.OutputFault naming it.
    """
    started = time.perf_counter()
    check_weights(cfg)
    store = open_output(cfg)
    run_id = new_run_id()
    o = cfg.output
    with acquire_lease(store, run_id, ttl_s=o.lease_ttl_s, wait_s=o.lease_wait_s).start_renewing() as lease:
        if o.overwrite:
            clear_for_overwrite(store)
        mark_output(store)
        # Before anything else is written: a crash from here on never leaves an old "accounted: true".
        write_running_summary(store, run_id, public_dict(cfg), content_hash=content_hash(cfg))
        try:
            return _run_held(cfg, store, run_id, lease, started, progress, verbose, engine_factory, retry_errors, redo)
        except BaseException as exc:
            fault = find_output_fault(exc)
            if not lease.lost:  # else another run writes this output now: its summary is not ours to touch
                mark_failed(store, run_id, *failure(fault or exc))
            if fault is None or fault is exc:
                raise
            raise fault from exc  # the fault a Ray worker hit, out of the Ray error that carried it as text


def _run_held(cfg: RunConfig, store: Store, run_id: str, lease, started: float, progress: bool, verbose: bool,
              engine_factory, retry_errors: bool, redo: Redo) -> dict:  # fmt: skip
    """run() once the lease is held and summary.json says "running"; returns the final summary.

    The view is published at the start (an interrupted publish is finished, an older layout migrated)
    and at the end, before the verdict, which counts from the published view (output/publish.py).
    """
    recovered = publish(store)
    prep = prepare(cfg, retry_errors=retry_errors, redo=redo, store=store)
    if prep.committed.done_count:
        log.info("%s", prep.resume.describe())
    # No writer of this output runs yet: what an earlier attempt left uncommitted goes now.
    orphans = {"start": remove_orphans(store, prep.ids, when="at the start").record()}
    for name in RESULT_DIRS:
        store.makedirs(name)
    recorded = prep.committed.recorded(e["id"] for e in prep.manifest_errors)
    write_manifest_errors(store, manifest_error_view(prep.manifest_errors, recorded))
    totals = Progress()
    # Rows refused by the manifest are this run's failures too: name them first, as the engine's are named.
    totals.error_samples += [f"{e['id']}: [manifest] {e['error']}" for e in prep.manifest_errors[:5]]
    if prep.todo:
        execute_resuming(prep, totals, progress, verbose, engine_factory, lease, retry_errors, redo)
    lease.check()
    published = publish(store)
    if prep.todo:
        # Every commit is in: files of attempts that lost a worker mid-write go too. After the publish,
        # so the audio is matched against a few view files, not every part of the journal.
        orphans["end"] = remove_orphans(store, prep.ids, when="at the end").record()
    wall_s = time.perf_counter() - started
    committed = with_duplicates(read_committed_latest(store), recovered, published)
    return finish_summary(prep, totals, wall_s, committed, run_id, orphans=orphans, view=published.rows)


def with_duplicates(latest: Latest, *publishes: Published) -> Latest:
    """The published view's newest records, with the duplicates this run's publishes kept out of it (in history/)."""
    for published in publishes:
        latest.duplicate_ok += published.duplicates
        latest.duplicate_ids += published.duplicate_ids
    return latest


def execute_resuming(prep: Prepared, totals: Progress, progress: bool, verbose: bool, engine_factory, lease,
                     retry_errors: bool, redo: Redo) -> None:  # fmt: skip
    """execute(), and when the execution dies of a lost actor or node (which Ray's own retries do
    not always cover: a task in flight on a node that vanished ends in ActorUnavailableError),
    resume it from what is committed, up to RESUMES times. Resuming is exact: nothing committed
    is redone or doubled, so this is the same as the user rerunning the command."""
    for attempt in range(RESUMES + 1):
        try:
            # A resumed attempt starts with whichever actors fit: the lost node's share may never come back.
            return execute(prep, totals, progress, verbose, engine_factory, lease, wait_for_actors=attempt == 0)
        except Exception as exc:
            if attempt == RESUMES or not lost_a_worker(exc) or find_output_fault(exc) is not None:
                raise  # a full or read-only output stays so: resuming would only fail again
            log.warning("the run lost a worker (%s: %s); resuming from what is committed (%d of %d)",
                        type(exc).__name__, str(exc).splitlines()[0][:200], attempt + 1, RESUMES)  # fmt: skip
            # Rows this run committed are "done" now; ask again only for what is still to do.
            redo = redo_left(redo, prep, read_committed_latest(prep.store))
            prep = prepare(prep.config, retry_errors=retry_errors, redo=redo, store=prep.store)
            if not prep.todo:
                return None
    return None


def redo_left(redo: Redo, prep: Prepared, now: Latest) -> Redo:
    """--redo ids after a resume: those the lost attempt did not rewrite yet (their revision is unchanged)."""
    if redo is None or isinstance(redo, str):
        return redo
    before = prep.committed.revisions
    return {i for i in redo if now.revisions.get(i, 0) == before.get(i, 0)} or None


def lost_a_worker(exc: BaseException) -> bool:
    """An actor or node gone mid-run (not an actor that failed to start: that would fail again)."""
    import ray.exceptions as rex  # about 1 s; loaded by then: only a failed execution asks

    for err in (exc, exc.__cause__, exc.__context__):
        if isinstance(err, rex.RayActorError) and not getattr(err, "actor_init_failed", False):
            return True
        if isinstance(err, rex.ObjectLostError | rex.NodeDiedError | rex.WorkerCrashedError):
            return True
    return False


def execute(prep: Prepared, totals: Progress, progress: bool, verbose: bool = False, engine_factory=None,
            lease=None, wait_for_actors: bool = True) -> None:  # fmt: skip
    started_ray = ensure_ray(verbose, dashboard=prep.config.compute.dashboard)
    if not verbose:
        quiet_ray_console()
    try:
        check_resources(prep.config, strict=started_ray)
        with run_monitor() as monitor:  # the execution's crash notes and heartbeats, ended with it
            _stream(prep, totals, progress, build_dataset(prep, verbose, engine_factory, wait_for_actors, monitor),
                    monitor, lease)  # fmt: skip
    except BaseException as exc:
        gc.collect()  # a failed execution's actors hold their CPUs/GPUs until collected
        if type(exc).__name__ == "GetTimeoutError" and "starting actors" in str(exc):
            c = prep.config.compute
            raise ValueError(
                f"the stages' actors did not all start within compute.start_timeout_s={c.start_timeout_s:g}: the "
                f"cluster lacks the resources for compute.actors={c.actors} (cpus_per_actor={c.cpus_per_actor:g}, "
                f"gpus_per_actor={c.gpus_per_actor:g}) or loading the model takes longer; add nodes, lower "
                "compute.actors, or raise compute.start_timeout_s"
            ) from None
        raise
    finally:
        if started_ray:
            import ray  # loaded by ensure_ray already; named here only to end the session it started

            ray.shutdown()


def _stream(prep: Prepared, totals: Progress, progress: bool, ds, monitor, lease) -> None:
    """Iterate the dataset's per-row summaries into totals, with the progress bar, the "still running"
    line and the frozen-actor breaker beside it."""
    from tqdm import tqdm  # the bar only a run shows; kept off `barkpipe --help`'s path

    bar = tqdm(total=prep.todo, unit="row", desc="synthesize", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    c = prep.config.compute
    breaker = FrozenActorBreaker(monitor, c.frozen_after_s, kill=kill_actor)
    with (
        bar,
        ProgressLogger(c.progress_log_s, total=prep.todo) as heartbeat,
        breaker if c.frozen_after_s else nullcontext(),
    ):
        for batch in result_tables(ds):
            bar.update(totals.add(batch))
            heartbeat.update(totals.ok + totals.errors, totals.audio_s)
            if lease is not None:
                lease.check()  # another run took the output over: stop before writing more
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(
                f"audio {totals.audio_s:.1f}s ({totals.audio_s / elapsed:.2f} s/s) errors {totals.errors}"
            )
    if c.frozen_after_s:
        breaker.retire()  # before the monitor ends: an actor Ray has not ended yet is ended now


def result_tables(ds):
    """The dataset's output blocks as Arrow tables, bundle by bundle as the execution yields them.

    Not iter_batches: in Ray 2.60 its BatchIterator sends the execution's stats to Ray's stats actor every
    5 s, and those stats hold every output block's stats so far, so each send grows with the run and the
    run's time with the square of its rows (a million rows: the stats actor at 9 min of CPU and 708 MB)."""
    import ray  # loaded by ensure_ray already; kept off the import of this module
    from ray.data.block import BlockAccessor  # as above

    for bundle in ds.iter_internal_ref_bundles():
        for block, part in zip(ray.get(bundle.block_refs), bundle.slices, strict=True):
            rows = BlockAccessor.for_block(block)
            if part is not None:  # a bundle may hand over part of a block
                rows = BlockAccessor.for_block(rows.slice(part.start_offset, part.end_offset, copy=False))
            yield rows.to_arrow()


def check_resources(cfg: RunConfig, strict: bool) -> None:
    """Catch the plans that would wait forever: actors and CPU stages holding more than the cluster has.

    strict (a cluster this run started) raises; a connected cluster may autoscale, so it only warns.
    """
    import ray  # about 1 s: loaded by ensure_ray already, kept off the import of this module

    from pipeline.batch.processor import READ_CPUS, StagePlan  # its stages load torch: as above

    c = cfg.compute
    have = ray.cluster_resources()
    plan = StagePlan.for_cluster(c, have)
    cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    problems = []
    # The actors hold their CPUs for the whole run; a read task and one finish task need theirs beside them.
    held = c.min_actors * c.cpus_per_actor + plan.prepare_actors * c.prepare_cpus
    if held + READ_CPUS + c.finish_cpus > cpus + 1e-9:
        problems.append(
            f"compute.actors x compute.cpus_per_actor ({c.min_actors} x {c.cpus_per_actor:g}) plus "
            f"{plan.prepare_actors} prepare actor(s) x compute.prepare_cpus ({c.prepare_cpus:g}) = {held:g} CPUs "
            "leaves "
            f"less than {READ_CPUS + c.finish_cpus:g} for reading and finishing on this {cpus:g}-CPU cluster; "
            f"lower compute.cpus_per_actor (e.g. 0.5) or compute.actors"
        )
    if c.min_actors * c.gpus_per_actor > gpus + 1e-9:
        problems.append(
            f"compute.actors x compute.gpus_per_actor = {c.min_actors * c.gpus_per_actor:g} GPUs but the cluster has "
            f"{gpus:g}; set compute.gpus_per_actor=0 and model.device=cpu, or fewer actors"
        )
    elif c.max_actors * c.gpus_per_actor > gpus + 1e-9:
        log.warning(
            "compute.actors allows %d actors but %g GPUs fit %d; the pool stays smaller unless the cluster grows",
            c.max_actors,
            gpus,
            int(gpus // c.gpus_per_actor),
        )
    if c.accelerator_type and not any(k == f"accelerator_type:{c.accelerator_type}" for k in have):
        types = sorted(k.split(":", 1)[1] for k in have if k.startswith("accelerator_type:"))
        problems.append(
            f"compute.accelerator_type {c.accelerator_type!r} is on no node of this cluster "
            f"(it has {types or 'no typed accelerators'}); set another type or null"
        )
    for problem in problems:
        if strict:
            raise ValueError(problem)
        log.warning(problem)


def build_dataset(prep: Prepared, verbose: bool = False, engine_factory=None, wait_for_actors: bool = True,
                  monitor=None):  # fmt: skip
    """read files -> drop done/bad ids -> prepare -> engine -> finish + commit (one actor call).

    monitor: the execution's RunMonitor handle (crash notes and heartbeats of the engine actors)."""
    import ray  # about 1 s: loaded by ensure_ray already, kept off the import of this module
    from ray.data import DataContext  # as above

    from pipeline.batch.processor import (  # its stages load torch/pyarrow: only a run that executes pays
        READ_CPUS,
        StagePlan,
        engine_stage,
        finish_stage,
        in_windows,
        prepare_stage,
    )

    info, cfg = prep.manifest, prep.config
    ctx = DataContext.get_current()  # settings are captured when the dataset is created: set them first
    ctx.enable_progress_bars = verbose  # otherwise the driver's tqdm shows rows and audio seconds instead
    # Every engine actor of the minimum starts before the first window is handed out, so a run's
    # windows spread over all of them (an actor still loading would otherwise find none left).
    ctx.wait_for_min_actors_s = (math.ceil(cfg.compute.start_timeout_s) or -1) if wait_for_actors else -1
    data_context_settings(ctx, cfg.compute)  # what Ray Data retries and times out itself (guard.py)
    # Not read_parquet: in Ray 2.60 it plans a ListFiles task that asks for a whole CPU, which never
    # comes on nodes whose CPUs the actors hold (two 1-CPU nodes sat at 0 rows). The driver has
    # listed the files already; each read task takes one file, READ_CPUS, and drops done/bad ids.
    files = ray.data.from_items([{"path": f} for f in info.files], override_num_blocks=len(info.files))
    renames = {k: v for k, v in ((info.id_column, ID), (info.text_column, TEXT)) if k != v}
    # One Arrow array for every read task: it pickles compactly, and each task hashes it once, not per block.
    skip = prep.skip
    read = partial(read_rows, fs=info.fs, schema=info.schema, renames=renames, skip=skip, block_rows=READ_BLOCK_ROWS)
    ds = files.map_batches(read, batch_size=1, batch_format="pyarrow", num_cpus=READ_CPUS)
    plan = StagePlan.for_cluster(cfg.compute, ray.cluster_resources(), prep.window())
    with quiet_remote_args():
        ds = prepare_stage(in_windows(ds, plan.window), cfg, plan, prep.revisions)
        ds = engine_stage(ds, cfg, plan, engine_factory, monitor)
        commit = {
            "output_url": cfg.output.path,
            "storage_options": cfg.output.storage_options,
            "config_hash": prep.config_hash,
            "retry_s": cfg.output.retry_s,
            "secrets": tuple(sorted(config_secrets(cfg))),
        }
        return finish_stage(ds, cfg, plan, commit)
