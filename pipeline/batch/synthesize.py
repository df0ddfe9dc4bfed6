"""The engine stage (GPU): planned rows -> codes -> 16-bit PCM per chunk, with gates and regenerations.

One actor holds one engine. A call takes a window of planned rows, sorts the window's chunks by
estimated length and cuts them into micro-batches (length bucketing without a shuffle), runs the
continuity chain where asked, and hands each row over with its chunks' PCM. Joining, loudness and
encoding happen in the finish stage, on CPUs, while this actor generates the next window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from pipeline.batch.config import ComputeConfig, GenerationConfig, ModelConfig, QualityConfig
from pipeline.batch.faults import free_device_memory, is_fatal, is_oom
from pipeline.batch.prepare import chunk_seed, derive_seed  # noqa: F401  (re-exported: longform imports them here)
from pipeline.batch.rows import Job, Row, handover, judge

log = logging.getLogger(__name__)
# An actor call hands its rows over in blocks of about this much audio, so several finish tasks
# can work on one window at once without a part file per short row.
HANDOVER_BLOCK_AUDIO_S = 120.0
# Columns the stage reads; every other column passes through untouched.
NEEDED = (
    "id",
    "voice",
    "seed",
    "text_temp",
    "waveform_temp",
    "max_duration",
    "plan",
    "error_stage",
    "error",
    "timings",
)


def load_engine(model: ModelConfig):
    """The default engine factory: fetch the weights to this node (once) and load them."""
    from bark_model import BarkEngine
    from pipeline.weights import fetch_weights

    # model.storage_options arrives with remote weights; until then a local folder needs none.
    weights_dir = fetch_weights(model.weights, getattr(model, "storage_options", None) or {})
    return BarkEngine.from_dir(weights_dir, device=model.device, precision=model.precision)


def current_node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray, e.g. a stage called in a test)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class EngineStage:
    """Ray Data callable class: loads the engine once per actor, then generates windows of planned rows.

    engine_factory: a picklable zero-argument callable returning an object with BarkEngine's
    `generate`, `load_voice`, `model_info` (and `auto_batch_size` for batch_size "auto"); default:
    load_engine(model). prompt_from_result turns a result into the next chunk's voice (chain modes).
    """

    def __init__(self, model: ModelConfig, generation: GenerationConfig, quality: QualityConfig,
                 compute: ComputeConfig, engine_factory: Callable[[], Any] | None = None,
                 prompt_from_result: Callable[[Any], Any] | None = None):  # fmt: skip
        start = time.perf_counter()
        self.engine = (engine_factory or partial(load_engine, model))()
        log.info("engine loaded in %.2f s: %s", time.perf_counter() - start, self.engine.model_info)
        self.generation, self.quality, self.batch_size = generation, quality, compute.batch_size
        self.prompt_from_result = prompt_from_result
        self.node_id = current_node_id()
        info = self.engine.model_info
        self.model = str(info.get("name") or "/".join(str(info[k]) for k in ("layout", "size") if k in info) or "bark")
        self.checksum = str(info.get("checksum", ""))
        self.engine_seconds = 0.0  # total time inside engine.generate in this actor
        self._voices: dict[Any, Any] = {}  # voice spec -> VoicePrompt | None | the error it raised

    def __call__(self, batch) -> Iterator:
        from pipeline.batch.schema import missing_columns

        missing_columns(batch, NEEDED)
        start = time.perf_counter()
        rows = [Row.from_prepared(r) for r in batch.select(list(NEEDED)).to_pylist()]
        live = [r for r in rows if r.error is None]
        for row in live:
            self._resolve_voice(row)
        live = [r for r in live if r.error is None]
        if self.generation.continuity == "fixed":
            self._run([job for row in live for job in row.jobs])
        else:
            self._run_chain(live)
        log.info(
            "window of %d rows in %.2f s (engine %.2f s so far)",
            len(rows),
            time.perf_counter() - start,
            self.engine_seconds,
        )
        yield from self._handover(batch, rows)

    # -- handing over --------------------------------------------------------------------------

    def _handover(self, batch, rows: list[Row]) -> Iterator:
        """Output blocks of about HANDOVER_BLOCK_AUDIO_S each, in window order."""
        start, seconds = 0, 0.0
        for i, row in enumerate(rows):
            seconds += sum(j.result.duration_s for j in row.jobs if j.result is not None) if row.error is None else 0
            if seconds >= HANDOVER_BLOCK_AUDIO_S or i == len(rows) - 1:
                yield self._table(batch.slice(start, i + 1 - start), rows[start : i + 1])
                start, seconds = i + 1, 0.0

    def _table(self, batch, rows: list[Row]):
        import pyarrow as pa

        from pipeline.batch.schema import engine_fields

        records = [handover(r, self.quality.on_fail, self.model, self.checksum, self.node_id) for r in rows]
        schema = pa.schema(
            [
                ("error_stage", pa.string()),
                ("error", pa.string()),
                *engine_fields(),
                ("timings", batch.schema.field("timings").type),
            ]
        )
        made = pa.Table.from_pylist(records, schema=schema)
        out = batch.drop_columns(["plan", "error_stage", "error", "timings"])
        for name in made.column_names:
            out = out.append_column(made.schema.field(name), made.column(name))
        return out

    # -- voices --------------------------------------------------------------------------------

    def _resolve_voice(self, row: Row) -> None:
        spec = row.voice_spec
        if spec not in self._voices:
            try:
                self._voices[spec] = self.engine.load_voice(spec)
            except (ValueError, FileNotFoundError) as exc:
                self._voices[spec] = exc
        voice = self._voices[spec]
        if isinstance(voice, Exception):
            row.fail("voice", f"voice {spec!r} cannot be used: {voice}")
            return
        row.voice = voice
        for job in row.jobs:
            job.voice = voice

    # -- generating ----------------------------------------------------------------------------

    def _run(self, jobs: list[Job]) -> None:
        """Generate jobs, then regenerate the ones failing the gates with derived seeds."""
        todo = jobs
        while todo:
            self._generate(todo)
            if not self.quality.enabled:
                return
            failing = [j for j in todo if j.row.error is None and not self._judge(j)]
            todo = [j for j in failing if j.attempt < self.quality.max_retries]
            for job in todo:
                job.attempt += 1
                job.seed = chunk_seed(job.row.seed, job.chunk.index, job.attempt)

    def _run_chain(self, rows: list[Row]) -> None:
        """Chunk k of every row in one batch, then chunk k+1 speaking in chunk k's voice."""
        for k in range(max((len(r.jobs) for r in rows), default=0)):
            step = []
            for row in rows:
                if row.error is None and k < len(row.jobs):
                    row.jobs[k].voice = row.voice if self._resets(k) else self._chain_voice(row.jobs[k - 1])
                    step.append(row.jobs[k])
            self._run([j for j in step if j.row.error is None])

    def _resets(self, k: int) -> bool:
        g = self.generation
        return k == 0 or (g.continuity == "chain-reset-every" and k % g.reset_every == 0)

    def _chain_voice(self, previous: Job):
        if self.prompt_from_result is None:
            from bark_model import VoicePrompt

            self.prompt_from_result = VoicePrompt.from_result
        try:
            return self.prompt_from_result(previous.result)
        except (ValueError, TypeError) as exc:
            previous.row.fail("generate", f"chunk {previous.chunk.index} cannot seed the next chunk's voice: {exc}")

    def _generate(self, jobs: list[Job]) -> None:
        live = sorted((j for j in jobs if j.row.error is None), key=lambda j: (j.chunk.est_seconds, len(j.chunk.text)))
        size = self.batch_size
        if size == "auto":
            size = self.engine.auto_batch_size()
        for start in range(0, len(live), size):
            self._generate_batch(live[start : start + size])

    def _generate_batch(self, batch: list[Job]) -> None:
        try:
            results = self._call_engine(batch)
        except Exception as exc:
            if is_oom(exc) and len(batch) > 1:  # long chunks met in one batch: halve it, keep the actor
                log.warning("out of device memory with %d chunks; retrying in halves", len(batch))
                free_device_memory()
                self._generate_batch(batch[: len(batch) // 2])
                self._generate_batch(batch[len(batch) // 2 :])
                return
            if is_fatal(exc):
                raise
            if len(batch) > 1:  # find the bad request: the others still deserve audio
                for job in batch:
                    self._generate_batch([job])
                return
            job = batch[0]
            job.row.fail("generate", f"chunk {job.chunk.index} failed to generate ({type(exc).__name__}: {exc})")
            return
        for job, result in zip(batch, results, strict=True):
            job.result = result

    def _call_engine(self, batch: list[Job]) -> list:
        from bark_model.request import GenerationRequest

        requests = [
            GenerationRequest.simple(
                j.chunk.text,
                voice=j.voice,
                seed=j.seed,
                text_temp=j.row.text_temp,
                waveform_temp=j.row.waveform_temp,
                max_duration_s=j.row.max_duration,
            )
            for j in batch
        ]
        start = time.perf_counter()
        results = self.engine.generate(requests, batch_size=len(requests))
        elapsed = time.perf_counter() - start
        assert len(results) == len(batch), f"engine returned {len(results)} results for {len(batch)} requests"
        self.engine_seconds += elapsed
        stage_times = results[0].timings  # shared by the whole batch (engine contract)
        for job in batch:  # a batch's time is shared equally by its chunks
            job.row.engine_s += elapsed / len(batch)
            job.row.timings["generate"] += elapsed / len(batch)
            for stage, seconds in stage_times.items():
                job.row.timings[stage] += seconds / len(batch)
        return results

    def _judge(self, job: Job) -> bool:
        start = time.perf_counter()
        passed = judge(job, self.quality.limits)
        job.row.timings["quality"] += time.perf_counter() - start
        return passed
