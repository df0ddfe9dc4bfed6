"""`build_processor`: the three stages as one `Dataset -> Dataset` step, shaped like ray.data.llm's processors.

    processor = build_processor(load_config("configs/smoke.yaml"))
    ds = processor(ray.data.read_parquet("manifest.parquet"))   # + audio, audio_name, duration_s, chunks...

prepare (CPU actors: check, normalise, split, plan) -> engine (GPU actors: chunks -> 16-bit PCM)
-> finish (CPU actors: trim, join, loudness, encode). Nothing is written: `barkpipe run` is this
plus reading, skipping done ids, committing audio/metadata/errors and the summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.batch.guard import quiet_remote_args, retry_args
from pipeline.batch.session import streaming_repartition
from pipeline.config import ComputeConfig, RunConfig, content_hash

# CPUs a manifest read task (and the id filter fused with it) reserves: it is short and I/O bound,
# and a whole CPU would deadlock small nodes whose CPUs the actors already hold.
READ_CPUS = 0.1
# One prepare actor keeps this many engine actors fed (tokenizing and splitting take milliseconds a row).
ENGINE_ACTORS_PER_PREPARE = 4


@dataclass(frozen=True)
class StagePlan:
    """Resources and concurrency of each stage on a given cluster."""

    window: int  # rows per engine call
    prepare_actors: int
    finish_actors: int

    @classmethod
    def for_cluster(cls, compute: ComputeConfig, cluster: dict, window: int | None = None) -> StagePlan:
        """compute.prepare_concurrency / finish_concurrency when set, else what the cluster's spare CPUs allow."""
        c = compute
        prepare = c.prepare_concurrency or max(1, math.ceil(c.max_actors / ENGINE_ACTORS_PER_PREPARE))
        spare = cluster.get("CPU", 0.0) - c.max_actors * c.cpus_per_actor - prepare * c.prepare_cpus - READ_CPUS
        # About one finish actor per spare CPU (each does CPU work), never more than the spare CPUs hold.
        finish = c.finish_concurrency or max(1, min(math.ceil(spare - 1e-9), math.floor(spare / c.finish_cpus + 1e-9)))
        return cls(window or c.window_rows, prepare, finish)


def build_processor(config: RunConfig, *, engine_factory: Callable[[], Any] | None = None,
                    window: int | None = None) -> Callable:  # fmt: skip
    """A callable adding audio and metadata columns to a Dataset of manifest rows (id, text, ...).

    Needs a connected Ray (stage sizes come from the cluster's resources when they are called).
    engine_factory replaces the default load_engine(config.model) (a picklable zero-argument callable).
    """

    def process(ds):
        import ray  # about 1 s: paid when the processor runs, not when it is built

        plan = StagePlan.for_cluster(config.compute, ray.cluster_resources(), window)
        with quiet_remote_args():
            ds = engine_stage(prepare_stage(in_windows(ds, plan.window), config, plan), config, plan, engine_factory)
            return finish_stage(ds, config, plan)

    return process


def in_windows(ds, rows: int):
    """ds cut into blocks of `rows` rows: one block is one actor task, so this is what spreads rows over
    the engine actors and lets finished windows stream on (a small manifest is otherwise one block,
    made entirely by one actor and committed only at its end). Each cut asks for READ_CPUS only."""
    return streaming_repartition(ds, rows, READ_CPUS)


def prepare_stage(ds, config: RunConfig, plan: StagePlan, revisions: dict[str, int] | None = None):
    """revisions: id -> revision of the rows a resumed run redoes (runner's resume plan)."""
    from ray.data import ActorPoolStrategy  # Ray and the stages load torch/pyarrow: only a run pays for them

    from pipeline.batch.stages.prepare import PrepareStage  # as above
    from pipeline.text.lexicon import load_lexicon  # as above

    c = config.compute
    return ds.map_batches(
        PrepareStage, fn_constructor_kwargs={"weights": config.model.weights, "generation": config.generation,
                                             "segment": config.segment, "settings_hash": content_hash(config),
                                             "revisions": revisions or {}, "text_format": config.input.text_format,
                                             # read here, so actors on other nodes need no copy of the file
                                             "lexicon": load_lexicon(g.lexicon) if (g := config.generation).lexicon
                                             else None},
        batch_size=plan.window, batch_format="pyarrow", compute=ActorPoolStrategy(size=plan.prepare_actors),
        num_cpus=c.prepare_cpus, **retry_args(c),
    )  # fmt: skip


def engine_stage(ds, config: RunConfig, plan: StagePlan, engine_factory=None, monitor=None):
    """monitor: the run's RunMonitor handle (run.py), so poison rows become errors and frozen actors are
    noticed (monitor.py); None: neither."""
    from ray.data import ActorPoolStrategy  # as in prepare_stage

    from pipeline.batch.stages.engine import EngineStage  # as above

    c = config.compute
    return ds.map_batches(
        EngineStage,
        fn_constructor_kwargs={"model": config.model, "generation": config.generation, "quality": config.quality,
                               "compute": c, "engine_factory": engine_factory, "monitor": monitor},
        batch_size=plan.window, batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=c.min_actors, max_size=c.max_actors),
        num_cpus=c.cpus_per_actor, num_gpus=c.gpus_per_actor or None, accelerator_type=c.accelerator_type,
        **retry_args(c),
    )  # fmt: skip


def finish_stage(ds, config: RunConfig, plan: StagePlan, commit: dict | None = None):
    """Finish actors; `commit` (write_block's keyword arguments) makes them commit too (the runner's)."""
    from ray.data import ActorPoolStrategy  # as in prepare_stage

    from pipeline.batch.stages.finish import FinishStage  # as above

    c = config.compute
    return ds.map_batches(
        FinishStage, fn_constructor_kwargs={"segment": config.segment, "audio_format": config.output.format,
                                            "commit": commit},
        batch_size=None, batch_format="pyarrow",
        # min 1: a pool that cannot place all its actors still runs; the rest join when CPUs free up.
        # Starts with one actor and grows to finish_actors with the queue: the run waits only for the
        # actors it must have (compute.start_timeout_s), never for ones a busy cluster cannot place.
        compute=ActorPoolStrategy(min_size=1, max_size=plan.finish_actors, initial_size=1),
        num_cpus=c.finish_cpus, **retry_args(c),
    )  # fmt: skip
