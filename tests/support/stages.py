"""Shared by the stage tests: a fake engine, a config builder, and the three stages called in order."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import soundfile as sf

from pipeline.config import validate_config
from pipeline.batch.stages.finish import finish_rows
from pipeline.batch.stages.prepare import PrepareStage
from pipeline.batch.stages.engine import EngineStage
from pipeline.text.segment import estimate_seconds

SR = 24_000
# Settings that keep the arithmetic easy: no trimming, no fades, 0.1 s between chunks.
BASE = {
    "input": {"path": "m.parquet"}, "output": {"path": "out", "format": "wav"}, "model": {"weights": "w"},
    "segment": {"target_seconds": 2.0, "max_seconds": 3.0, "sentence_pause_s": 0.1, "paragraph_pause_s": 0.3,
                "crossfade_ms": 0.0, "trim_silence": False},
    "compute": {"batch_size": 3},
}
LONG = " ".join(f"Sentence number {w} is here." for w in ["one", "two", "three", "four", "five", "six"])


def config(**sections):
    """BASE with some keys of some sections changed, e.g. config(generation={"seed": 3})."""
    data = {k: dict(v) for k, v in BASE.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return validate_config(data)


@dataclass
class FakeResult:
    audio: np.ndarray
    seed: int
    text: str
    voice: object
    sample_rate: int = SR
    timings: dict = field(default_factory=lambda: {"semantic": 0.01, "coarse": 0.01})
    dropped_text_tokens: int = 0

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the stage recognises by name."""


class FakeEngine:
    """A sine as long as the segmenter expects the text to take; remembers every generate call."""

    model_info = {"layout": "suno", "size": "fake", "checksum": "sha256:fake"}

    def __init__(self, silent_seeds=(), always_silent=False, max_batch=None):
        self.calls: list[list] = []
        self.max_batch = max_batch  # larger batches raise OutOfMemoryError
        self.silent_seeds = set(silent_seeds)
        self.always_silent = always_silent

    def load_voice(self, voice):
        if voice in (None, "v2/en_speaker_0") or isinstance(voice, FakeResult):
            return voice
        raise ValueError(f"unknown voice {voice!r}; presets here: v2/en_speaker_0")

    def generate(self, requests, batch_size=None, progress=None):
        if self.max_batch and len(requests) > self.max_batch:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls.append(list(requests))
        out = []
        for r in requests:
            if "BOOM" in r.text:
                raise KeyError("tokenizer blew up")  # a per-row bug, not a device error
            if "CUDA" in r.text:
                raise RuntimeError("CUDA error: device-side assert triggered")
            n = samples(r.text)
            amp = 0.0 if self.always_silent or r.seed in self.silent_seeds else 0.3
            audio = (amp * np.sin(np.arange(n) * 2 * np.pi * 220 / SR)).astype(np.float32)
            out.append(FakeResult(audio, r.seed, r.text, r.voice))
        return out


def samples(text: str) -> int:
    return int(estimate_seconds(text) * SR)


def engine_stage(cfg, engine, **kwargs):
    """EngineStage on `engine`; kwargs go to EngineStage (e.g. on_stall)."""
    return EngineStage(cfg.model, cfg.generation, cfg.quality, cfg.compute, engine_factory=lambda: engine,
                       prompt_from_result=lambda r: ("from", r.seed), **kwargs)


def run_stages(table: pa.Table, cfg=None, engine=None, stage=None) -> pa.Table:
    """prepare -> engine -> finish on one batch, as the processor chains them (no Ray)."""
    cfg = cfg or config()
    stage = stage or engine_stage(cfg, engine or FakeEngine())
    prepared = PrepareStage(cfg.model.weights, cfg.generation, cfg.segment)(table)
    generated = pa.concat_tables(list(stage(prepared)))
    return finish_rows(generated, segment=cfg.segment, audio_format=cfg.output.format)


def batch(rows, **extra_columns):
    data = {"id": [r[0] for r in rows], "text": [r[1] for r in rows]}
    data.update(extra_columns)
    return pa.table(data)


def decode(data: bytes) -> np.ndarray:
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == SR
    return audio


class KillingEngine(FakeEngine):
    """Ends its whole process (as a segfault or the OOM killer would) on any batch holding POISON."""

    def generate(self, requests, batch_size=None, progress=None):
        if any("POISON" in r.text for r in requests):
            import os

            os._exit(139)
        return super().generate(requests, batch_size, progress)
