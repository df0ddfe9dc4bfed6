"""Run configuration: pydantic models, YAML loading, --set overrides, redaction and hashing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Keys whose values are secrets wherever they appear in storage_options (matched as substrings).
SECRET_KEY_PARTS = ("secret", "password", "token", "key", "credential", "session", "auth")
REDACTED = "***"


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(Section):
    path: str = Field(description="Manifest: a Parquet file, a folder of them or a glob; local path or fsspec URL.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for the input filesystem (endpoint_url, anon...); prefer credentials from the environment.",
    )
    id_column: str = Field("id", description="Column holding the unique row id (string).")
    text_column: str = Field("text", description="Column holding the text to speak (string).")


class OutputConfig(Section):
    path: str = Field(description="Output root (local path or fsspec URL): audio/, metadata/, errors/, summary.json.")
    format: Literal["wav", "flac", "ogg"] = Field("flac", description="Audio container written by soundfile.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for the output filesystem.")
    overwrite: bool = Field(
        False,
        description="false: resume, skipping ids already committed; true: delete earlier results under output.path first.",
    )


class ModelConfig(Section):
    weights: str = Field(description="Local directory with Bark weights (suno or hf layout).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device for the engine; auto picks cuda when present.")
    precision: Literal["fp32", "fp16", "bf16", "int8"] = Field("fp32", description="Numeric precision of the engine.")


class GenerationConfig(Section):
    voice: str | None = Field(None, description="Default voice (preset name or .npz path) for rows without one; null = none.")
    seed: int | None = Field(None, ge=0, description="Default row seed; null derives a stable seed from each row's id.")
    text_temp: float = Field(0.7, ge=0, description="Semantic-stage temperature (0 = greedy).")
    waveform_temp: float = Field(0.7, ge=0, description="Coarse-stage temperature (0 = greedy).")
    max_duration: float | None = Field(None, gt=0, description="Longest audio per chunk in seconds; null = engine limit.")
    continuity: Literal["fixed", "chain", "chain-reset-every"] = Field(
        "fixed",
        description="fixed: every chunk uses the row voice (fully batched); chain: chunk k speaks in chunk k-1's voice; "
        "chain-reset-every: chain, back to the row voice every reset_every chunks.",
    )
    reset_every: int = Field(4, ge=1, description="Chunks between voice resets for continuity chain-reset-every.")


class SegmentConfig(Section):
    language: str = Field("en", description="Default language for sentence splitting (rows may override).")
    max_tokens: int = Field(256, ge=8, le=256, description="Most text tokens per chunk (Bark sees 256).")
    target_seconds: float = Field(12.0, gt=0, description="Preferred spoken length of a chunk.")
    max_seconds: float = Field(14.0, gt=0, description="Hard cap on a chunk's estimated spoken length.")
    sentence_pause_s: float = Field(0.25, ge=0, description="Silence inserted between chunks.")
    paragraph_pause_s: float = Field(0.7, ge=0, description="Silence inserted after a chunk that ends a paragraph.")
    crossfade_ms: float = Field(10.0, ge=0, description="Crossfade at each join, in milliseconds.")
    trim_silence: bool = Field(True, description="Trim leading/trailing silence of each chunk before joining.")
    loudness_lufs: float | None = Field(None, ge=-70, le=0, description="Integrated loudness target of each row; null = unchanged.")

    @model_validator(mode="after")
    def _target_within_max(self):
        if self.target_seconds > self.max_seconds:
            raise ValueError(f"target_seconds ({self.target_seconds}) must be <= max_seconds ({self.max_seconds})")
        return self


class QualityConfig(Section):
    enabled: bool = Field(False, description="Measure every chunk and regenerate those that fail the gates.")
    limits: dict[str, float] = Field(default_factory=dict, description="Overrides of pipeline.audio.quality.GateLimits fields.")
    max_retries: int = Field(2, ge=0, description="Regenerations (with a derived seed) of a failing chunk.")
    on_fail: Literal["flag", "error"] = Field("flag", description="A chunk that never passes: flag the row or error it.")

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, limits: dict[str, float]) -> dict[str, float]:
        if not limits:
            return limits
        from pipeline.audio.quality import GateLimits  # light module; names the allowed keys

        allowed = sorted(GateLimits.__dataclass_fields__)
        unknown = sorted(set(limits) - set(allowed))
        if unknown:
            raise ValueError(f"unknown limit(s) {unknown}; allowed: {allowed}")
        return limits


class ComputeConfig(Section):
    actors: int = Field(1, ge=1, description="Engine actors (one model copy each).")
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs reserved per actor (0 on CPU machines).")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved per actor; keep it fractional on small machines.")
    writer_cpus: float = Field(0.25, gt=0, description="CPUs reserved per write task (I/O bound).")
    batch_size: int | Literal["auto"] = Field(
        8, description="Chunks decoded together in one engine.generate call (an integer >= 1), or 'auto': "
        "as many as fit in the GPU's free memory (8 on CPU)."
    )

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be an integer >= 1 or 'auto'")
        return value
    window_rows: int = Field(64, ge=1, description="Rows per actor call; chunks are length-sorted within a window.")
    max_restarts: int = Field(2, ge=0, description="Restarts of a crashed actor before the run fails.")
    max_task_retries: int = Field(2, ge=0, description="Retries of a task lost to a crashed actor or worker.")


class RunConfig(Section):
    input: InputConfig = Field(description="Where the manifest is.")
    output: OutputConfig = Field(description="Where results go.")
    model: ModelConfig = Field(description="Which weights, device and precision.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Sampling defaults per row.")
    segment: SegmentConfig = Field(default_factory=SegmentConfig, description="Chunking and reassembly.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Per-chunk quality gates.")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Ray resources and batching.")


class ConfigError(ValueError):
    """A config file or override the user must fix; the message is one line per problem."""


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read YAML, apply `key=value` overrides, validate; raise ConfigError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    for item in overrides:
        apply_override(data, item)
    return validate_config(data)


def validate_config(data: dict) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(err) for err in exc.errors())) from None


def apply_override(data: dict, item: str) -> None:
    """Set a dotted key from `key=value`; the value is parsed as a YAML scalar (so 3 -> int, null -> None)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. output.format=wav")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        node[parts[-1]] = raw


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r} (allowed here: {', '.join(_allowed_keys(err['loc'][:-1]))})"
    if err["type"] == "missing":
        return f"{loc}: required key is missing"
    got = err.get("input")
    where = f"{loc}: " if loc else ""
    return f"{where}{err['msg']} (got {got!r})"


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def redact(options: Any) -> Any:
    """Copy of storage_options with secret-looking keys (at any depth) replaced by '***'."""
    if isinstance(options, dict):
        return {
            k: REDACTED if v is not None and any(p in str(k).lower() for p in SECRET_KEY_PARTS) else redact(v)
            for k, v in options.items()
        }
    if isinstance(options, list):
        return [redact(v) for v in options]
    return _redact_urls(options)


def _redact_urls(value: Any) -> Any:
    from pipeline.storage import redact_url

    if isinstance(value, dict):
        return {k: _redact_urls(v) for k, v in value.items()}
    return redact_url(value) if isinstance(value, str) else value


def public_dict(config: RunConfig) -> dict:
    """The config as plain data with storage secrets and URL passwords redacted: safe to log, hash, store."""
    data = _redact_urls(config.model_dump(mode="json"))
    for section in ("input", "output"):
        data[section]["storage_options"] = redact(data[section]["storage_options"])
    return data


def config_hash(config: RunConfig) -> str:
    """sha256 of the redacted config, so a rotated secret does not change the identity of a run."""
    canonical = json.dumps(public_dict(config), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def content_hash(config: RunConfig) -> str:
    """Hash of the settings that shape the audio (not paths or compute): resume should not mix two."""
    data = public_dict(config)
    shaping = {k: data[k] for k in ("model", "generation", "segment", "quality")} | {"format": data["output"]["format"]}
    return "sha256:" + hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
