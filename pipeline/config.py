"""Run configuration: the pydantic sections (every default once), validation, redaction and hashing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bark_model.names import DEVICE_PATTERN, DEVICES
from pipeline.audio.quality import GateLimits
from pipeline.audio.speech import check_language
from pipeline.configerrors import ConfigError, describe_errors
from pipeline.configfile import apply_override, read_config_file
from pipeline.redact import redact, secret_values, url_passwords
from pipeline.text.segment import DEFAULT_MAX_TEXT_CHARS, MAX_CHUNK_SECONDS, MAX_CHUNK_TOKENS, TARGET_CHUNK_SECONDS
from pipeline.text.voices import check_speakers

DEFAULT_TEMPERATURE = 0.7  # Bark's own default for both sampling temperatures (`say` uses it too)
EMPTY_PATH = "is empty (an unset shell variable in --set?); give a local path or a URL"


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError(EMPTY_PATH)
    return value


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(Section):
    path: str = Field(description="Manifest: a Parquet file, a folder of them or a glob; local path or fsspec URL.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for the input filesystem (endpoint_url, anon...); prefer credentials from "
        "the environment.",
    )
    id_column: str = Field(
        "id", description="Column holding the unique row id (string, or integer: used as its decimal text)."
    )
    text_column: str = Field("text", description="Column holding the text to speak (string).")
    text_format: Literal["plain", "ssml"] = Field(
        "plain",
        description='How rows\' text is read: plain, or ssml (the subset in docs/AUDIOBOOK.md, "Lexicon and SSML"); '
        "a row's text_format column overrides it.",
    )

    _path = field_validator("path")(_not_empty)


class OutputConfig(Section):
    path: str = Field(description="Output root (local path or fsspec URL): audio/, metadata/, errors/, summary.json.")
    format: Literal["wav", "flac", "ogg", "mp3", "opus"] = Field(
        "flac",
        description="Audio file written by soundfile: wav/flac (16-bit PCM), ogg (Vorbis), mp3 or opus (Ogg Opus).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for the output filesystem."
    )
    overwrite: bool = Field(
        False,
        description="false: resume, skipping ids already committed; true: delete earlier results under "
        "output.path first.",
    )
    retry_s: float = Field(
        300.0,
        ge=0,
        description="Seconds a storage call keeps retrying transient errors (outages, throttling) before the run "
        "fails.",
    )
    lease_ttl_s: float = Field(
        600.0,
        ge=30,
        description="One writer per output: a run's lease expires this long after its last renewal (renewed "
        "every third of it).",
    )
    lease_wait_s: float = Field(
        0.0,
        ge=0,
        description="How long a run waits for another run's lease on output.path; 0 = refuse at once.",
    )

    _path = field_validator("path")(_not_empty)


class ModelConfig(Section):
    weights: str = Field(
        description="Bark weights (suno or hf layout): a local folder, an fsspec URL (s3://bucket/prefix) or "
        "hf://owner/repo[@revision]; URLs are fetched once per node into $BARKPIPE_CACHE (default ~/.cache/barkpipe).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for an fsspec weights URL (endpoint_url, key...); prefer credentials from "
        "the environment.",
    )
    device: str = Field(
        "auto",
        description="Device for the engine: auto, cpu, cuda, cuda:N or mps; auto picks cuda, then mps, then cpu.",
    )
    precision: Literal["fp32", "fp16", "bf16", "int8"] = Field("fp32", description="Numeric precision of the engine.")
    compile: bool | None = Field(
        None,
        description="Fuse decode steps with torch.compile (falls back to uncompiled steps, logged once); null = "
        "on for CUDA only.",
    )

    _weights = field_validator("weights")(_not_empty)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"must be {DEVICES}")
        return value


class GenerationConfig(Section):
    voice: str | None = Field(
        None, description="Default voice (preset name or .npz path) for rows without one; null = none."
    )
    seed: int | None = Field(None, ge=0, description="Default row seed; null derives a stable seed from each row's id.")
    text_temp: float = Field(DEFAULT_TEMPERATURE, ge=0, description="Semantic-stage temperature (0 = greedy).")
    waveform_temp: float = Field(DEFAULT_TEMPERATURE, ge=0, description="Coarse-stage temperature (0 = greedy).")
    max_duration: float | None = Field(
        None, gt=0, description="Longest audio per chunk in seconds; null = engine limit."
    )
    continuity: Literal["fixed", "chain", "chain-reset-every"] = Field(
        "fixed",
        description="fixed: every chunk uses the row voice (fully batched); chain: chunk k speaks in chunk k-1's "
        "voice; "
        "chain-reset-every: chain, back to the row voice every reset_every chunks.",
    )
    reset_every: int = Field(4, ge=1, description="Chunks between voice resets for continuity chain-reset-every.")
    voice_dirs: list[str] = Field(
        default_factory=list,
        description="Folders whose .npz files a row's voice column may name; rows may otherwise use only the "
        "weights' presets.",
    )
    speakers: dict[str, str] = Field(
        default_factory=dict,
        description="Names a text may use at line starts (`ALICE: ...`) or in `[voice: ALICE]` tags, mapped to voices "
        "(preset or .npz, as the voice column takes); see pipeline/text/voices.py.",
    )
    lexicon: str | None = Field(
        None,
        description="Pronunciation lexicon: a local TSV of word<TAB>respelling[<TAB>language] lines, whole words "
        "respelled (case ignored) after normalisation; a row's lexicon column adds lines over it. null = none.",
    )

    @field_validator("speakers")
    @classmethod
    def _speaker_names(cls, speakers: dict[str, str]) -> dict[str, str]:
        check_speakers(speakers)
        return speakers


class SegmentConfig(Section):
    language: str = Field("en", description="Default language for sentence splitting (rows may override).")
    max_tokens: int = Field(
        MAX_CHUNK_TOKENS, ge=8, le=MAX_CHUNK_TOKENS, description="Most text tokens per chunk (Bark sees 256)."
    )
    max_text_chars: int = Field(
        DEFAULT_MAX_TEXT_CHARS,
        ge=1,
        description="Longest text of one row in characters; a longer row is an error row (split it in the manifest).",
    )
    target_seconds: float = Field(TARGET_CHUNK_SECONDS, gt=0, description="Preferred spoken length of a chunk.")
    max_seconds: float = Field(MAX_CHUNK_SECONDS, gt=0, description="Hard cap on a chunk's estimated spoken length.")
    sentence_pause_s: float = Field(0.25, ge=0, description="Silence inserted between chunks.")
    paragraph_pause_s: float = Field(0.7, ge=0, description="Silence inserted after a chunk that ends a paragraph.")
    crossfade_ms: float = Field(10.0, ge=0, description="Crossfade at each join, in milliseconds.")
    trim_silence: bool = Field(True, description="Trim leading/trailing silence of each chunk before joining.")
    loudness_lufs: float | None = Field(
        None, ge=-70, le=0, description="Integrated loudness target of each row; null = unchanged."
    )

    @model_validator(mode="after")
    def _target_within_max(self):
        if self.target_seconds > self.max_seconds:
            raise ValueError(f"target_seconds ({self.target_seconds}) must be <= max_seconds ({self.max_seconds})")
        return self


class SpeechConfig(Section):
    backend: Literal["pocketsphinx", "faster-whisper"] = Field(
        "pocketsphinx", description="Speech recogniser: pocketsphinx (offline, US English built in) or faster-whisper."
    )
    model: str | None = Field(
        None,
        description="pocketsphinx: null (the wheel's en-us model) or a model folder; faster-whisper: a local "
        "CTranslate2 model folder or a Hub id/size name (e.g. Systran/faster-whisper-small).",
    )
    language: str = Field("en", description="Language the recogniser listens for; one it cannot do fails validation.")
    max_wer: float = Field(0.5, ge=0, description="Largest word error rate of a chunk's transcript against its text.")
    max_cer: float | None = Field(None, ge=0, description="Largest character error rate; null = not gated.")
    device: str = Field("cpu", description="faster-whisper device: cpu, cuda or cuda:N (pocketsphinx runs on CPU).")

    @model_validator(mode="after")
    def _backend_can_do_language(self):
        check_language(self.backend, self.model, self.language)
        return self


class SpeakerConfig(Section):
    backend: Literal["resemblyzer"] = Field(
        "resemblyzer",
        description="Speaker encoder: Resemblyzer's GE2E voice encoder; its weights ship inside barkpipe.",
    )
    min_similarity: float = Field(
        0.75, ge=-1, le=1, description="Smallest cosine similarity of a chunk's voice to the reference voice."
    )
    reference: Literal["first_chunk", "voice_prompt"] = Field(
        "first_chunk",
        description="first_chunk: the row's first accepted chunk in the same voice; voice_prompt: "
        "the voice prompt's audio (rows without a voice fall back to first_chunk).",
    )


class QualityConfig(Section):
    enabled: bool = Field(False, description="Measure every chunk and regenerate those that fail the gates.")
    limits: dict[str, float] = Field(
        default_factory=dict, description="Overrides of pipeline.audio.quality.GateLimits fields."
    )
    max_retries: int = Field(2, ge=0, description="Regenerations (with a derived seed) of a failing chunk.")
    on_fail: Literal["flag", "error"] = Field(
        "flag", description="A chunk that never passes: flag the row or error it."
    )
    speech: SpeechConfig | None = Field(None, description="Speech check (transcript vs text); null = off.")
    speaker: SpeakerConfig | None = Field(None, description="Speaker-consistency check; null = off.")

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, limits: dict[str, float]) -> dict[str, float]:
        if not limits:
            return limits
        allowed = sorted(GateLimits.__dataclass_fields__)
        unknown = sorted(set(limits) - set(allowed))
        if unknown:
            raise ValueError(f"unknown limit(s) {unknown}; allowed: {allowed}")
        return limits


class ComputeConfig(Section):
    actors: int | tuple[int, int] = Field(
        1, description="Engine actors (one model copy each): N, or [min, max] for a pool Ray Data grows and shrinks."
    )
    accelerator_type: str | None = Field(
        None, description="Ray accelerator type the engine actors need (e.g. H100, A10G); null = any GPU."
    )
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs reserved per actor (0 on CPU machines).")
    cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs reserved per actor; keep it fractional on small machines."
    )
    prepare_cpus: float = Field(0.25, gt=0, description="CPUs reserved per prepare actor (normalise, split, plan).")
    prepare_concurrency: int | None = Field(None, ge=1, description="Prepare actors; null = one per 4 engine actors.")
    finish_cpus: float = Field(
        0.25,
        gt=0,
        description="CPUs reserved per finish actor (trim, join, loudness, encode, write); small so "
        "small nodes never deadlock.",
    )
    finish_concurrency: int | None = Field(
        None, ge=1, description="Finish actors; null = about one per CPU the other actors leave spare."
    )
    batch_size: int | Literal["auto"] = Field(
        8,
        description="Chunks decoded together in one engine.generate call (an integer >= 1), or 'auto': "
        "as many as fit in the GPU's free memory (8 on CPU).",
    )

    @field_validator("actors")
    @classmethod
    def _actor_range(cls, value):
        low, high = (value, value) if isinstance(value, int) else value
        if not 1 <= low <= high:
            raise ValueError("actors must be an integer >= 1 or [min, max] with 1 <= min <= max")
        return value

    @property
    def min_actors(self) -> int:
        return self.actors if isinstance(self.actors, int) else self.actors[0]

    @property
    def max_actors(self) -> int:
        return self.actors if isinstance(self.actors, int) else self.actors[1]

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be an integer >= 1 or 'auto'")
        return value

    window_rows: int = Field(64, ge=1, description="Rows per actor call; chunks are length-sorted within a window.")
    max_restarts: int = Field(2, ge=0, description="Restarts of a crashed actor before the run fails.")
    max_task_retries: int = Field(2, ge=0, description="Retries of a task lost to a crashed actor or worker.")
    call_timeout_s: float = Field(
        1800.0,
        ge=0,
        description="Longest one engine call may run before the watchdog ends the actor (Ray "
        "restarts it and retries its rows); 0 = off.",
    )
    progress_log_s: float = Field(
        60.0, ge=0, description="Seconds between 'still running' log lines while a run waits for rows; 0 = off."
    )
    dashboard: bool = Field(
        False,
        description="A local run's Ray dashboard, on 127.0.0.1 only (`barkpipe run --dashboard`); off by default so "
        "a run opens no port beyond loopback. A cluster's own dashboard is the cluster's business.",
    )
    start_timeout_s: float = Field(
        900.0,
        ge=0,
        description="How long a run waits for each stage's first actors (compute.actors' minimum, model loads "
        "included) before it stops with an error; 0 = start with whichever actors are up and add the rest as "
        "they come.",
    )
    frozen_after_s: float = Field(
        300.0,
        ge=0,
        description="An engine actor whose heartbeat (written every fifth of this) stops this long, a frozen "
        "process the watchdog cannot reach, is killed so Ray restarts it and retries its rows; 0 = off.",
    )


class RunConfig(Section):
    input: InputConfig = Field(description="Where the manifest is.")
    output: OutputConfig = Field(description="Where results go.")
    model: ModelConfig = Field(description="Which weights, device and precision.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Sampling defaults per row.")
    segment: SegmentConfig = Field(default_factory=SegmentConfig, description="Chunking and reassembly.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Per-chunk quality gates.")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Ray resources and batching.")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read YAML, apply `key=value` overrides, validate; raise ConfigError naming every bad key."""
    data = read_config_file(path)
    for item in overrides:
        apply_override(data, item)
    return validate_config(data)


def validate_config(data: dict) -> RunConfig:
    """RunConfig from plain data; ConfigError with one line per bad key (all of them, not the first)."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc.errors(), RunConfig)
        raise ConfigError("; ".join(problems), problems) from None


def public_dict(config: RunConfig) -> dict:
    """The config as plain data with secrets redacted by key and by value shape: safe to log, hash, store."""
    return redact(config.model_dump(mode="json"))


def config_secrets(config: RunConfig) -> set[str]:
    """Secret values in the config (under secret-looking keys, URL passwords): scrub them from free text."""
    data = config.model_dump(mode="json")
    return secret_values(data) | url_passwords(data)


def config_hash(config: RunConfig) -> str:
    """sha256 of the redacted config, so a rotated secret does not change the identity of a run."""
    canonical = json.dumps(public_dict(config), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:  # validate names the missing file; the hash just cannot include it
        return None


def content_hash(config: RunConfig) -> str:
    """Hash of the settings that shape the audio (not paths or compute): resume should not mix two."""
    data = public_dict(config)
    shaping = {k: data[k] for k in ("model", "generation", "segment", "quality")} | {"format": data["output"]["format"]}
    # Only when set, so the hash of a config without them (and so resume of its output) is unchanged.
    if config.input.text_format != "plain":
        shaping["text_format"] = config.input.text_format
    if config.generation.lexicon:  # the file's words, not its path: an edited lexicon redoes the rows
        shaping["lexicon_sha256"] = _file_sha256(config.generation.lexicon)
    return "sha256:" + hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
