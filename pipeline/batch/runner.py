"""`barkpipe run`: manifest checks and resume, then read -> processor (prepare, engine, finish) -> commit -> summary."""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pipeline.batch.config import RunConfig, config_hash
from pipeline.batch.manifest import ID, TEXT, ManifestInfo, id_problems, inspect_manifest, read_ids
from pipeline.batch.sink import Committed, read_committed, write_manifest_errors
from pipeline.storage import Store

log = logging.getLogger(__name__)
# Under this many rows the manifest is read in blocks of one window, so every actor gets work (a
# small file would otherwise be one block for one actor). Bigger manifests have blocks enough.
SMALL_MANIFEST_ROWS = 100_000
OUTPUT_DIRS = ("audio", "metadata", "errors")
# Small runs are cut into at least this many windows per engine actor, so finishing one window
# overlaps generating the next (one window per actor would finish everything after the last chunk).
MIN_WINDOWS_PER_ACTOR = 4
# Manifest rows per block as files are read (a chapter-per-row manifest is a few MB per 1,000 rows).
READ_BLOCK_ROWS = 1024


@dataclass
class Prepared:
    """What the driver works out before starting Ray: the manifest, the output and what is left to do."""

    config: RunConfig
    manifest: ManifestInfo
    store: Store
    ids: list
    excluded: set
    manifest_errors: list
    committed: Committed
    config_hash: str

    @property
    def skip(self) -> set:
        return self.excluded | self.committed.done_ids

    @cached_property
    def todo(self) -> int:
        skip = self.skip
        return sum(1 for i in self.ids if isinstance(i, str) and i not in skip)  # null ids are manifest errors

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
    from pipeline.weights import is_remote, parse_source

    parse_source(cfg.model.weights)  # WeightsError (a ValueError) for a malformed hf:// id, before any node tries
    if not is_remote(cfg.model.weights) and not Path(cfg.model.weights).is_dir():
        raise FileNotFoundError(
            f"model.weights {cfg.model.weights!r} is not a directory; create tiny test weights with "
            f"`barkpipe weights make-random --size tiny --layout suno {cfg.model.weights}` or download real ones"
        )


def prepare(cfg: RunConfig) -> Prepared:
    """Everything up to (not including) Ray: manifest schema and ids, output state, manifest errors."""
    info = inspect_manifest(cfg.input.path, cfg.input.storage_options, cfg.input.id_column, cfg.input.text_column)
    ids = read_ids(info)
    excluded, manifest_errors = id_problems(ids)
    store = Store.open(cfg.output.path, cfg.output.storage_options)
    try:
        committed = Committed() if cfg.output.overwrite else read_committed(store)
    except TypeError as exc:  # s3fs checks its options only when it first connects
        raise ValueError(f"output.storage_options are not accepted: {exc}") from None
    return Prepared(cfg, info, store, ids, excluded, manifest_errors, committed, config_hash(cfg))


def run(cfg: RunConfig, *, progress: bool = True, verbose: bool = False, engine_factory=None) -> dict:
    """Run the whole pipeline (resuming unless output.overwrite) and return the summary.

    verbose: Ray's own progress bars and worker logs. engine_factory: replaces the default engine
    loader in the engine actors (see processor.build_processor); benchmarks plug a stand-in in here.
    """
    from pipeline.batch.summary import finish_summary

    started = time.perf_counter()
    check_weights(cfg)
    prep = prepare(cfg)
    warn_if_config_changed(prep)
    if cfg.output.overwrite:
        for name in (*OUTPUT_DIRS, "summary.json"):
            prep.store.remove(name)
    for name in OUTPUT_DIRS:
        prep.store.makedirs(name)
    write_manifest_errors(prep.store, prep.manifest_errors)
    totals = Progress()
    if prep.todo:
        execute(prep, totals, progress, verbose, engine_factory)
    wall_s = time.perf_counter() - started
    return finish_summary(prep, totals, wall_s, read_committed(prep.store))


def warn_if_config_changed(prep: Prepared) -> None:
    from pipeline.batch.config import content_hash
    from pipeline.batch.summary import previous_content_hash

    before = None if prep.config.output.overwrite else previous_content_hash(prep.store)
    if before and before != content_hash(prep.config) and prep.committed.ok:
        log.warning(
            "output.path holds %d rows made with different model/generation/segment/quality settings; "
            "resuming mixes both (set output.overwrite=true to start over)",
            len(prep.committed.ok),
        )


def execute(prep: Prepared, totals: Progress, progress: bool, verbose: bool = False, engine_factory=None) -> None:
    from tqdm import tqdm

    started_ray = ensure_ray(verbose)
    try:
        check_resources(prep.config, strict=started_ray)
        ds = build_dataset(prep, verbose, engine_factory)
        bar = tqdm(total=prep.todo, unit="row", desc="synthesize", disable=not progress, dynamic_ncols=True)
        start = time.perf_counter()
        with bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                bar.update(totals.add(batch))
                elapsed = max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(
                    f"audio {totals.audio_s:.1f}s ({totals.audio_s / elapsed:.2f} s/s) errors {totals.errors}"
                )
    except BaseException:
        gc.collect()  # a failed execution's actors hold their CPUs/GPUs until collected
        raise
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def ensure_ray(verbose: bool = False) -> bool:
    """Connect to Ray (the cluster in RAY_ADDRESS / ray job submit) or start a local one; True if started."""
    import ray

    # Ray 2.60 turns token auth on for a fresh local cluster; a laptop run does not want that.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, log_to_driver=verbose)
    return True


def check_resources(cfg: RunConfig, strict: bool) -> None:
    """Catch the plans that would wait forever: actors and CPU stages holding more than the cluster has.

    strict (a cluster this run started) raises; a connected cluster may autoscale, so it only warns.
    """
    import ray

    from pipeline.batch.processor import READ_CPUS, StagePlan

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


def build_dataset(prep: Prepared, verbose: bool = False, engine_factory=None):
    """read files -> drop done/bad ids -> prepare -> engine -> finish + commit (one actor call)."""
    import ray
    from ray.data import DataContext

    from pipeline.batch.processor import (
        READ_CPUS,
        StagePlan,
        engine_stage,
        finish_stage,
        prepare_stage,
        quiet_remote_args,
    )

    info, cfg = prep.manifest, prep.config
    ctx = DataContext.get_current()  # settings are captured when the dataset is created: set them first
    ctx.enable_progress_bars = verbose  # otherwise the driver's tqdm shows rows and audio seconds instead
    # Not read_parquet: in Ray 2.60 it plans a ListFiles task that asks for a whole CPU, which never
    # comes on nodes whose CPUs the actors hold (two 1-CPU nodes sat at 0 rows). The driver has
    # listed the files already; each read task takes one file, READ_CPUS, and drops done/bad ids.
    files = ray.data.from_items([{"path": f} for f in info.files], override_num_blocks=len(info.files))
    renames = {k: v for k, v in ((info.id_column, ID), (info.text_column, TEXT)) if k != v}
    # Blocks of one window each for small manifests, so every actor gets work (no repartition: its
    # tasks ask for a whole CPU each, the same deadlock as above).
    window = prep.window()
    block_rows = window if prep.todo <= SMALL_MANIFEST_ROWS else READ_BLOCK_ROWS
    ds = files.map_batches(read_rows, batch_size=1, batch_format="pyarrow", num_cpus=READ_CPUS,
                           fn_kwargs={"fs": info.fs, "schema": info.schema, "renames": renames,
                                      "skip": sorted(prep.skip), "block_rows": block_rows})  # fmt: skip
    plan = StagePlan.for_cluster(cfg.compute, ray.cluster_resources(), window)
    with quiet_remote_args():
        ds = engine_stage(prepare_stage(ds, cfg, plan), cfg, plan, engine_factory)
        commit = {
            "output_url": cfg.output.path,
            "storage_options": cfg.output.storage_options,
            "config_hash": prep.config_hash,
        }
        return finish_stage(ds, cfg, plan, commit)


def read_rows(batch, *, fs, schema, renames: dict, skip: list, block_rows: int = 1024):
    """Ray Data map_batches function: the manifest rows of one file (batch: one `path`), in blocks."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    for path in batch["path"].to_pylist():
        dataset = pads.dataset(path, filesystem=fs, format="parquet", schema=schema)  # the unified schema
        for record_batch in dataset.to_batches(batch_size=block_rows):
            table = pa.Table.from_batches([record_batch], schema=schema)
            if renames:
                table = table.rename_columns([renames.get(n, n) for n in table.column_names])
            yield drop_ids(table, skip)


def drop_ids(batch, skip: list):
    """Rows whose id is null, bad, duplicated or already committed never reach the actors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = batch[ID].cast(pa.string())  # large_string manifests compare against a string set
    keep = pc.invert(pc.is_in(ids, value_set=pa.array(skip, pa.string())))
    keep = pc.and_(pc.fill_null(keep, False), pc.is_valid(ids))
    return batch.filter(keep)
