"""The synthesize stage: one actor call turns a window of manifest rows into encoded audio, row by row."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.batch.manifest import clean, id_problem, row_problem

# Substrings of RuntimeError messages that mean the device itself is in trouble, not the row.
log = logging.getLogger(__name__)
_FATAL_MARKERS = ("CUDA", "cuDNN", "CUBLAS", "device-side assert", "NCCL", "out of memory", "HIP error")


def is_fatal(exc: BaseException) -> bool:
    """Errors that must end the actor (Ray restarts it) rather than become an error row."""
    if isinstance(exc, MemoryError) or type(exc).__name__ in ("OutOfMemoryError", "AcceleratorError"):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _FATAL_MARKERS)


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (same on every machine and Python run, unlike hash())."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


def chunk_seed(row_seed: int, index: int, attempt: int = 0) -> int:
    """Chunk 0's first attempt uses the row seed itself, so a one-chunk row matches `barkpipe say --seed`."""
    return row_seed if index == 0 and attempt == 0 else derive_seed(row_seed, index, attempt)


def load_engine(weights: str, device: str, precision: str):
    """Engine factory for the actors (module level so it pickles by reference)."""
    from bark_model import BarkEngine

    return BarkEngine.from_dir(weights, device=device, precision=precision)


@dataclass(frozen=True)
class StageSettings:
    """Everything the stage needs from the run config, as plain picklable data (built by from_config)."""

    voice: str | None
    seed: int | None
    text_temp: float
    waveform_temp: float
    max_duration: float | None
    continuity: str
    reset_every: int
    language: str
    max_tokens: int
    target_seconds: float
    max_seconds: float
    sentence_pause_s: float
    paragraph_pause_s: float
    crossfade_ms: float
    trim_silence: bool
    loudness_lufs: float | None
    quality: bool
    quality_limits: tuple  # (name, value) pairs for GateLimits
    max_retries: int
    on_fail: str
    batch_size: int | str  # or "auto": the engine sizes it from free memory
    audio_format: str

    @classmethod
    def from_config(cls, cfg) -> "StageSettings":
        g, s, q = cfg.generation, cfg.segment, cfg.quality
        return cls(
            voice=g.voice, seed=g.seed, text_temp=g.text_temp, waveform_temp=g.waveform_temp,
            max_duration=g.max_duration, continuity=g.continuity, reset_every=g.reset_every,
            language=s.language, max_tokens=s.max_tokens, target_seconds=s.target_seconds,
            max_seconds=s.max_seconds, sentence_pause_s=s.sentence_pause_s,
            paragraph_pause_s=s.paragraph_pause_s, crossfade_ms=s.crossfade_ms, trim_silence=s.trim_silence,
            loudness_lufs=s.loudness_lufs, quality=q.enabled, quality_limits=tuple(sorted(q.limits.items())),
            max_retries=q.max_retries, on_fail=q.on_fail, batch_size=cfg.compute.batch_size,
            audio_format=cfg.output.format,
        )


@dataclass
class Row:
    """One manifest row in flight; its chunks (jobs) stay inside this actor call from split to encode."""

    index: int
    id: Any
    text: str = ""
    voice_spec: str | None = None
    voice: Any = None
    seed: int = 0
    language: str | None = None
    text_temp: float | None = None
    waveform_temp: float | None = None
    max_duration: float | None = None
    jobs: list["Job"] = field(default_factory=list)
    timings: dict = field(default_factory=lambda: defaultdict(float))
    engine_s: float = 0.0
    error: tuple[str, str] | None = None  # (stage, sentence for the user)

    def fail(self, stage: str, message: str) -> None:
        if self.error is None:  # the first failure is the one worth reporting
            self.error = (stage, message)


@dataclass
class Job:
    """One chunk to generate; `attempt` counts quality regenerations."""

    row: Row
    chunk: Any  # pipeline.text.segment.Chunk
    seed: int
    voice: Any = None
    attempt: int = 0
    result: Any = None
    passed: bool | None = None
    failed: list = field(default_factory=list)
    measures: dict = field(default_factory=dict)


class SynthesizeStage:
    """Ray Data callable class: loads the engine once per actor, then synthesizes windows of rows.

    The window's chunks are sorted by estimated length and cut into micro-batches of
    `batch_size` (length bucketing without a shuffle); every row is assembled in the same call.
    """

    def __init__(self, engine_factory: Callable[[], Any], settings: StageSettings,
                 prompt_from_result: Callable[[Any], Any] | None = None):
        start = time.perf_counter()
        self.engine = engine_factory()
        log.info("engine loaded in %.2f s: %s", time.perf_counter() - start, self.engine.model_info)
        self.settings = settings
        self.prompt_from_result = prompt_from_result
        self.engine_seconds = 0.0  # total time inside engine.generate in this actor
        self._voices: dict[Any, Any] = {}  # voice spec -> VoicePrompt | None | the error it raised

    def __call__(self, batch):
        from pipeline.batch.rows import output_table

        start = time.perf_counter()
        rows = [self._prepare(i, raw) for i, raw in enumerate(batch.to_pylist())]
        live = [r for r in rows if r.error is None]
        if self.settings.continuity == "fixed":
            self._run([job for row in live for job in row.jobs])
        else:
            self._run_chain(live)
        table = output_table(batch, rows, self)
        log.info("window of %d rows in %.2f s (engine %.2f s so far)", len(rows), time.perf_counter() - start,
                 self.engine_seconds)
        return table

    # -- preparing rows ----------------------------------------------------------------------

    def _prepare(self, index: int, raw: dict) -> Row:
        start = time.perf_counter()
        s = self.settings
        row = Row(index, raw.get("id"))
        problem = id_problem(row.id) or row_problem(raw)
        if problem:
            row.fail("validate", problem)
            return row
        try:
            row.text = raw["text"]
            row.voice_spec = clean(raw.get("voice")) or s.voice
            row.voice = self._voice(row.voice_spec)
            seed = clean(raw.get("seed"))
            row.seed = int(seed) if seed is not None else s.seed if s.seed is not None else derive_seed("id", row.id)
            row.language = clean(raw.get("language")) or s.language
            row.text_temp = _pick(raw.get("text_temp"), s.text_temp)
            row.waveform_temp = _pick(raw.get("waveform_temp"), s.waveform_temp)
            row.max_duration = _pick(raw.get("max_duration"), s.max_duration)
            row.jobs = [Job(row, c, chunk_seed(row.seed, c.index), row.voice) for c in self._split(row)]
        except (ValueError, FileNotFoundError) as exc:
            row.fail(getattr(exc, "stage", "validate"), str(exc))
        except Exception as exc:
            if is_fatal(exc):
                raise
            row.fail("prepare", f"unexpected {type(exc).__name__}: {exc}")
        row.timings["prepare"] += time.perf_counter() - start
        return row

    def _voice(self, spec):
        if spec not in self._voices:
            try:
                self._voices[spec] = self.engine.load_voice(spec)
            except (ValueError, FileNotFoundError) as exc:
                self._voices[spec] = exc
        voice = self._voices[spec]
        if isinstance(voice, Exception):
            raise _staged(ValueError(f"voice {spec!r} cannot be used: {voice}"), "voice")
        return voice

    def _split(self, row: Row) -> list:
        from pipeline.text.segment import split_into_chunks
        from pipeline.text.normalize import normalize_text

        s = self.settings
        try:
            text = normalize_text(row.text, row.language)
        except ValueError as exc:
            raise _staged(ValueError(f"text cannot be prepared for language {row.language!r}: {exc}"), "validate") from None
        try:
            chunks = split_into_chunks(
                text, language=row.language, count_tokens=self.engine.count_text_tokens,
                max_tokens=s.max_tokens, target_seconds=s.target_seconds, max_seconds=s.max_seconds,
            )
        except ValueError as exc:
            raise _staged(ValueError(f"text cannot be split into chunks: {exc}"), "segment") from None
        if not chunks:
            raise _staged(ValueError("text has nothing to say after normalisation; fill the text column"), "segment")
        return chunks

    # -- generating ----------------------------------------------------------------------------

    def _run(self, jobs: list[Job]) -> None:
        """Generate jobs, then regenerate the ones failing the gates with derived seeds."""
        todo = jobs
        while todo:
            self._generate(todo)
            if not self.settings.quality:
                return
            failing = [j for j in todo if j.row.error is None and not self._judge(j)]
            todo = [j for j in failing if j.attempt < self.settings.max_retries]
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
        s = self.settings
        return k == 0 or (s.continuity == "chain-reset-every" and k % s.reset_every == 0)

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
        size = self.settings.batch_size
        if size == "auto":
            size = self.engine.auto_batch_size()
        for start in range(0, len(live), size):
            self._generate_batch(live[start:start + size])

    def _generate_batch(self, batch: list[Job]) -> None:
        try:
            results = self._call_engine(batch)
        except Exception as exc:
            if _is_oom(exc) and len(batch) > 1:  # long chunks met in one batch: halve it, keep the actor
                log.warning("out of device memory with %d chunks; retrying in halves", len(batch))
                _free_device_memory()
                self._generate_batch(batch[: len(batch) // 2])
                self._generate_batch(batch[len(batch) // 2:])
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
        for job, result in zip(batch, results):
            job.result = result

    def _call_engine(self, batch: list[Job]) -> list:
        from bark_model.request import GenerationRequest

        requests = [
            GenerationRequest.simple(
                j.chunk.text, voice=j.voice, seed=j.seed, text_temp=j.row.text_temp,
                waveform_temp=j.row.waveform_temp, max_duration_s=j.row.max_duration,
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
        from pipeline.batch.rows import judge

        start = time.perf_counter()
        passed = judge(job, self.settings)
        job.row.timings["quality"] += time.perf_counter() - start
        return passed


def _pick(value, default):
    value = clean(value)
    return default if value is None else float(value)


def _staged(exc: Exception, stage: str) -> Exception:
    exc.stage = stage  # read back in _prepare to name the failing stage in errors/
    return exc
