"""The engine stage (GPU): planned rows -> codes -> 16-bit PCM per chunk, with gates and regenerations.

One actor holds one engine (and the listening checks, when configured). A call decodes a window of
planned rows (their voices loaded), schedules it (the window's chunks sorted by estimated length and
cut into micro-batches, length bucketing without a shuffle; the continuity chain where asked; row by
row after an attempt at the window ended its worker, see monitor.py), and hands each row over with
its chunks' PCM. Joining, loudness and encoding happen in the finish stage, on CPUs, while this
actor generates the next window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pyarrow as pa
import ray

from pipeline.audio.listen import ListenChecks
from pipeline.batch.guard import CallWatchdog, Stall, end_process
from pipeline.batch.monitor import BEATS_PER_DEADLINE, CRASH_MESSAGE, CRASH_STAGE, CrashNotes, Heartbeat
from pipeline.batch.stages.faults import free_device_memory, is_fatal, is_oom
from pipeline.batch.stages.rows import Job, Row, handover, judge
from pipeline.config import ComputeConfig, GenerationConfig, ModelConfig, QualityConfig
from pipeline.output.schema import engine_fields, missing_columns
from pipeline.text.chunks import chunk_seed

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
    from bark_model import BarkEngine  # torch (~1.5 s): only an actor that loads the real engine pays it
    from pipeline.weights import fetch_weights  # as above (hf/s3 clients)

    # model.storage_options arrives with remote weights; until then a local folder needs none.
    weights_dir = fetch_weights(model.weights, getattr(model, "storage_options", None) or {})
    return BarkEngine.from_dir(weights_dir, device=model.device, precision=model.precision)


def current_node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray, e.g. a stage called in a test)."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def current_actor_id() -> str | None:
    """The Ray actor this process is (None outside one)."""
    return ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None


class EngineStage:
    """Ray Data callable class: loads the engine once per actor, then generates windows of planned rows.

    engine_factory: a picklable zero-argument callable returning an object with BarkEngine's
    `generate`, `load_voice`, `model_info` (and `auto_batch_size` for batch_size "auto", `decode`
    for quality.speaker.reference voice_prompt); default: load_engine(model). prompt_from_result
    turns a result into the next chunk's voice (chain modes). on_stall: what the watchdog does
    with a call past compute.call_timeout_s (default: end this process so Ray restarts the actor).
    monitor: the run's RunMonitor (its actor handle, or one in-process): crash notes, so poison
    rows become errors, and heartbeats, so a frozen actor is noticed (monitor.py); None: neither.

    The listening gates (quality.speech, quality.speaker) run whenever their section is set, even
    with quality.enabled false: a section is its own switch ("null = off"), and someone who wrote
    one expects it to judge. quality.enabled switches only the signal gates (quality.limits);
    max_retries and on_fail apply to both.
    """

    def __init__(self, model: ModelConfig, generation: GenerationConfig, quality: QualityConfig,
                 compute: ComputeConfig, engine_factory: Callable[[], Any] | None = None,
                 prompt_from_result: Callable[[Any], Any] | None = None,
                 on_stall: Callable[[Stall], None] | None = None, monitor: Any = None):  # fmt: skip
        self.notes = CrashNotes(monitor) if monitor is not None else None
        # Beats from the moment the actor starts: a load frozen as hard as a call is noticed too.
        actor_id = current_actor_id()
        self.heartbeat = None
        if monitor is not None and actor_id and compute.frozen_after_s > 0:
            self.heartbeat = Heartbeat(monitor, actor_id, compute.frozen_after_s / BEATS_PER_DEADLINE).start()
        start = time.perf_counter()
        self.engine = (engine_factory or partial(load_engine, model))()
        log.info("engine loaded in %.2f s: %s", time.perf_counter() - start, self.engine.model_info)
        self.watchdog = CallWatchdog(compute.call_timeout_s, on_stall=on_stall)  # one thread per actor
        start = time.perf_counter()
        self.listen = ListenChecks.from_quality(quality, _listen_device(self.engine, model.device))
        if self.listen is not None:
            log.info("listening checks loaded in %.2f s", time.perf_counter() - start)
        self._prompt_voices: dict[Any, Any] = {}  # voice spec -> embedding of the prompt's audio | None
        self.generation, self.quality, self.batch_size = generation, quality, compute.batch_size
        self.prompt_from_result = prompt_from_result
        self.node_id = current_node_id()
        info = self.engine.model_info
        self.model = str(info.get("name") or "/".join(str(info[k]) for k in ("layout", "size") if k in info) or "bark")
        self.checksum = str(info.get("checksum", ""))
        self.engine_seconds = 0.0  # total time inside engine.generate in this actor
        self._voices: dict[Any, Any] = {}  # voice spec -> VoicePrompt | None | the error it raised

    def __call__(self, batch) -> Iterator:
        start = time.perf_counter()
        rows = self._decode(batch)
        window = self._schedule([r for r in rows if r.error is None])
        if self.listen is not None:  # a row's chunks all live in this window: its references end with it
            for row in rows:
                self.listen.forget(row.id)
        log.info("window of %d rows in %.2f s (engine %.2f s so far)", len(rows), time.perf_counter() - start,
                 self.engine_seconds)  # fmt: skip
        yield from self._handover(batch, rows)
        self._close(window, rows)

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, batch) -> list[Row]:
        """The window's planned rows, each with its voices loaded (a voice that fails is the row's error)."""
        missing_columns(batch, NEEDED)
        rows = [Row.from_prepared(r) for r in batch.select(list(NEEDED)).to_pylist()]
        for row in rows:
            if row.error is None:
                self._resolve_voice(row)
        return rows

    # -- scheduling ----------------------------------------------------------------------------

    def _schedule(self, live: list[Row]) -> str | None:
        """Generate the live rows: the window at once, or row by row when an attempt at it ended its
        worker; returns the window's note (closed once handed over), None without a monitor."""
        if self.notes is None:
            self._generate_rows(live)
            return None
        window, died = self.notes.open_window([str(r.id) for r in live])
        if died:
            log.warning("the last attempt at this window of %d rows ended its worker; going row by row", len(live))
            for row in live:
                self._generate_alone(row)
        else:
            self._generate_rows(live)
        return window

    def _generate_alone(self, row: Row) -> None:
        """One row under a note of its own; a row whose note is there already ended a worker twice."""
        assert self.notes is not None, "row-by-row retries need the monitor's notes"
        key = self.notes.row_key(str(row.id))
        if self.notes.seen(key):
            row.fail(CRASH_STAGE, CRASH_MESSAGE)
            return
        self.notes.note(key)
        self._generate_rows([row])
        self.notes.clear(key)

    def _generate_rows(self, rows: list[Row]) -> None:
        try:
            if self.generation.continuity == "fixed":
                self._run([job for row in rows for job in row.jobs])
            else:
                self._run_chain(rows)
        except Exception as exc:
            if not is_fatal(exc) or self.notes is None:
                raise
            # Raising would fail the whole dataset (Ray Data does not retry a UDF error); ending the
            # process makes Ray restart the actor and retry the window, row by row (monitor.py).
            log.error("device error, ending this engine actor so Ray restarts it: %s: %s", type(exc).__name__, exc)
            end_process()

    def _close(self, window: str | None, rows: list[Row]) -> None:
        """Handed over: the window's note goes, and the notes of its poison rows with it."""
        if self.notes is None or window is None:
            return
        for row in rows:
            if row.error is not None and row.error[0] == CRASH_STAGE:
                self.notes.clear(self.notes.row_key(str(row.id)))
        self.notes.clear(window)

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
        """Load the voice of the row and of each chunk (a multi-voice row names several), once per spec."""
        speaker = self.quality.speaker
        for job in row.jobs:
            spec = job.chunk.voice if job.chunk.voice is not None else row.voice_spec
            voice = self._load_voice(spec)
            if isinstance(voice, Exception):
                row.fail("voice", f"voice {spec!r} cannot be used: {voice}")
                return
            job.voice = voice
            if spec == row.voice_spec:
                row.voice = voice
            if self.listen is not None and speaker is not None and speaker.reference == "voice_prompt":
                self.listen.use_reference(_voice_key(row, spec), self._prompt_voice(spec, voice))
        if not row.jobs:
            voice = self._load_voice(row.voice_spec)
            if isinstance(voice, Exception):
                row.fail("voice", f"voice {row.voice_spec!r} cannot be used: {voice}")
            else:
                row.voice = voice

    def _load_voice(self, spec):
        if spec not in self._voices:
            try:
                self._voices[spec] = self.engine.load_voice(spec)
            except (ValueError, FileNotFoundError) as exc:
                self._voices[spec] = exc
        return self._voices[spec]

    def _prompt_voice(self, spec, voice):
        """The speaker embedding of a voice prompt's own audio, once per spec; None falls back to first_chunk.

        The prompt's fine codes are decoded by the engine's codec (`decode`). An engine without
        `decode`, a row without a voice, or a prompt with no voice heard in it has no reference
        audio: the row's first accepted chunk becomes the reference instead (first_chunk).
        """
        if spec not in self._prompt_voices:
            fine = getattr(voice, "fine", None)
            decode = getattr(self.engine, "decode", None)
            embedding = None
            if fine is not None and decode is not None:
                audio = self.watchdog.call(decode, [fine], what="engine.decode", rows=1)[0]
                embedding = self.listen.voice_of(audio, _engine_sample_rate(self.engine))
            elif voice is not None:
                log.warning("voice %r: this engine cannot decode its prompt; speaker reference is first_chunk", spec)
            self._prompt_voices[spec] = embedding
        return self._prompt_voices[spec]

    # -- generating ----------------------------------------------------------------------------

    def _run(self, jobs: list[Job]) -> None:
        """Generate jobs, then regenerate the ones failing the gates with derived seeds."""
        todo = jobs
        while todo:
            self._generate(todo)
            if not self.quality.enabled and self.listen is None:
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
                    job = row.jobs[k]
                    # A voice change starts a new chain: chunk k-1's voice is another speaker's.
                    same = k > 0 and job.chunk.voice == row.jobs[k - 1].chunk.voice
                    job.voice = self._chain_voice(row.jobs[k - 1]) if same and not self._resets(k) else job.voice
                    step.append(row.jobs[k])
            self._run([j for j in step if j.row.error is None])

    def _resets(self, k: int) -> bool:
        g = self.generation
        return k == 0 or (g.continuity == "chain-reset-every" and k % g.reset_every == 0)

    def _chain_voice(self, previous: Job):
        if self.prompt_from_result is None:
            from bark_model import VoicePrompt  # torch: stand-in engines (tests, benchmarks) never load it

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
        from bark_model.request import GenerationRequest  # torch, as in _chain_voice

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
        with self.watchdog.watch("engine.generate", rows=len(requests)):
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
        """The signal gates (quality.enabled), then the listening gates; True when the chunk passes all."""
        start = time.perf_counter()
        if self.quality.enabled:
            judge(job, self.quality.limits)
        else:
            job.measures, job.failed = {}, []
        job.row.timings["quality"] += time.perf_counter() - start
        job.transcript = None
        # A chunk the signal gates reject is regenerated anyway: transcribing it is wasted work,
        # except on its last attempt, whose measures go into the metadata.
        if self.listen is not None and (not job.failed or job.attempt >= self.quality.max_retries):
            start = time.perf_counter()
            self._listen_to(job)
            job.row.timings["listen"] += time.perf_counter() - start
        job.passed = not job.failed
        return job.passed

    def _listen_to(self, job: Job) -> None:
        assert self.listen is not None, "_listen_to needs the listening checks"
        key, result = _voice_key(job.row, job.chunk.voice), job.result
        try:
            verdict = self.listen.judge(result.audio, result.sample_rate, job.chunk.text, key)
        except Exception as exc:
            if is_fatal(exc):
                raise
            job.row.fail("quality", f"chunk {job.chunk.index} could not be listened to ({type(exc).__name__}: {exc})")
            return
        job.measures.update(verdict.measures)
        job.failed = [*job.failed, *verdict.failed]
        job.transcript = verdict.transcript
        if not job.failed:
            self.listen.accept(key, verdict)


def _voice_key(row: Row, chunk_voice: str | None = None) -> tuple:
    """Whose voice a chunk must keep: its row and its voice spec (chain modes change the prompt, not the voice)."""
    return (row.id, chunk_voice if chunk_voice is not None else row.voice_spec)


def _listen_device(engine, device: str) -> str:
    """The speaker encoder's device: the engine's (BarkEngine resolves "auto"), else model.device."""
    resolved = getattr(engine, "device", None)
    if resolved is not None:
        return str(resolved)
    return "cpu" if device == "auto" else device


def _engine_sample_rate(engine) -> int:
    rate = getattr(engine, "sample_rate", None)
    if rate is None:
        from bark_model.constants import SAMPLE_RATE  # BarkEngine.decode's rate (EnCodec 24 kHz)

        rate = SAMPLE_RATE
    return int(rate)
