"""Build and execute the Ray Data pipeline: manifest checks, resume, the actor stage, writing, the summary."""

from __future__ import annotations

import gc
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

from pipeline.batch.config import RunConfig, config_hash
from pipeline.batch.manifest import ID, TEXT, ManifestInfo, id_problems, inspect_manifest, read_ids
from pipeline.batch.sink import Committed, read_committed, write_block, write_manifest_errors
from pipeline.storage import Store

log = logging.getLogger(__name__)
# Under this many rows the manifest is re-split so every actor gets work; a small file
# arrives as one block, and one block goes to one actor. Bigger manifests have blocks enough.
SMALL_MANIFEST_ROWS = 100_000
OUTPUT_DIRS = ("audio", "metadata", "errors")
READ_TASK_CPUS = 1  # Ray Data's default for read tasks


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
        """Rows per actor call; small runs get smaller windows so that every actor has one."""
        c = self.config.compute
        return max(1, min(c.window_rows, math.ceil(max(self.todo, 1) / c.actors)))


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
    if not Path(cfg.model.weights).is_dir():
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


def run(cfg: RunConfig, *, progress: bool = True) -> dict:
    """Run the whole pipeline (resuming unless output.overwrite) and return the summary."""
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
        execute(prep, totals, progress)
    wall_s = time.perf_counter() - started
    return finish_summary(prep, totals, wall_s, read_committed(prep.store))


def warn_if_config_changed(prep: Prepared) -> None:
    from pipeline.batch.config import content_hash
    from pipeline.batch.summary import previous_content_hash

    before = None if prep.config.output.overwrite else previous_content_hash(prep.store)
    if before and before != content_hash(prep.config) and prep.committed.ok:
        log.warning(
            "output.path holds %d rows made with different model/generation/segment/quality settings; "
            "resuming mixes both (set output.overwrite=true to start over)", len(prep.committed.ok),
        )


def execute(prep: Prepared, totals: Progress, progress: bool) -> None:
    from tqdm import tqdm

    started_ray = ensure_ray()
    try:
        check_resources(prep.config, strict=started_ray)
        ds = build_dataset(prep)
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


def ensure_ray() -> bool:
    """Connect to Ray (the cluster in RAY_ADDRESS / ray job submit) or start a local one; True if started."""
    import ray

    # Ray 2.60 turns token auth on for a fresh local cluster; a laptop run does not want that.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, log_to_driver=True)
    return True


def check_resources(cfg: RunConfig, strict: bool) -> None:
    """Catch the plans that would wait forever: actors holding every CPU, or GPUs the cluster lacks.

    strict (a cluster this run started) raises; a connected cluster may autoscale, so it only warns.
    """
    import ray

    c = cfg.compute
    have = ray.cluster_resources()
    problems = []
    # Actors hold their CPUs for the whole run; a read task needs one whole CPU beside them.
    if c.actors * c.cpus_per_actor + READ_TASK_CPUS > have.get("CPU", 0) + 1e-9:
        problems.append(
            f"compute.actors x compute.cpus_per_actor = {c.actors * c.cpus_per_actor:g} CPUs leaves less than "
            f"{READ_TASK_CPUS} for reading on this {have.get('CPU', 0):g}-CPU cluster; lower compute.cpus_per_actor "
            f"(e.g. 0.5) or compute.actors"
        )
    if c.actors * c.gpus_per_actor > have.get("GPU", 0) + 1e-9:
        problems.append(
            f"compute.actors x compute.gpus_per_actor = {c.actors * c.gpus_per_actor:g} GPUs but the cluster has "
            f"{have.get('GPU', 0):g}; set compute.gpus_per_actor=0 and model.device=cpu, or fewer actors"
        )
    for problem in problems:
        if strict:
            raise ValueError(problem)
        log.warning(problem)


def build_dataset(prep: Prepared):
    """read_parquet -> drop done/bad ids -> SynthesizeStage actors -> write_block tasks."""
    import ray
    from ray.data import DataContext

    info = prep.manifest
    ctx = DataContext.get_current()  # settings are captured when the dataset is created: set them first
    ctx.enable_progress_bars = False  # the driver's tqdm shows rows and audio seconds instead
    ds = ray.data.read_parquet(info.files, filesystem=info.fs)
    renames = {k: v for k, v in ((info.id_column, ID), (info.text_column, TEXT)) if k != v}
    if renames:
        ds = ds.rename_columns(renames)
    ds = ds.map_batches(drop_ids, fn_kwargs={"skip": sorted(prep.skip)}, batch_format="pyarrow", batch_size=None)
    window = prep.window()
    if prep.todo <= SMALL_MANIFEST_ROWS:
        ds = ds.repartition(max(1, math.ceil(prep.todo / window)))
    with warnings.catch_warnings():
        # Ray 2.60 flags max_restarts/max_task_retries/max_retries as "ray_remote_args" and has no
        # named replacement yet; the defaults (-1: retry forever) hang a run on a crashing row.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return _stages(ds, prep, window)


def _stages(ds, prep: Prepared, window: int):
    from ray.data import ActorPoolStrategy

    from pipeline.batch.synthesize import StageSettings, SynthesizeStage, load_engine

    cfg, c = prep.config, prep.config.compute
    engine_factory = partial(load_engine, cfg.model.weights, cfg.model.device, cfg.model.precision)
    ds = ds.map_batches(
        SynthesizeStage,
        fn_constructor_kwargs={"engine_factory": engine_factory, "settings": StageSettings.from_config(cfg)},
        batch_size=window,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=c.actors),
        num_cpus=c.cpus_per_actor,
        num_gpus=c.gpus_per_actor or None,
        max_restarts=c.max_restarts,  # Ray's default (-1) retries a crashing row forever
        max_task_retries=c.max_task_retries,
    )
    return ds.map_batches(
        write_block,
        fn_kwargs={"output_url": cfg.output.path, "storage_options": cfg.output.storage_options,
                   "config_hash": prep.config_hash},
        batch_size=None,
        batch_format="pyarrow",
        num_cpus=c.writer_cpus,
        max_retries=c.max_task_retries,
    )


def drop_ids(batch, skip: list):
    """Rows whose id is null, bad, duplicated or already committed never reach the actors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = batch[ID].cast(pa.string())  # large_string manifests compare against a string set
    keep = pc.invert(pc.is_in(ids, value_set=pa.array(skip, pa.string())))
    keep = pc.and_(pc.fill_null(keep, False), pc.is_valid(ids))
    return batch.filter(keep)
