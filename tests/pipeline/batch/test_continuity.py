"""Continuity modes of the engine stage on the real tiny engine: which voice each chunk was generated with."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from support.stages import run_stages

from pipeline.config import ModelConfig, validate_config

PRESET = "v2/en_speaker_0"  # shipped with the random weights
# Four paragraphs: a chunk never spans a paragraph break, so this row is exactly four chunks.
TEXTS = ["One.", "Two.", "Three.", "Four."]
FOUR = "\n\n".join(TEXTS)


class RecordingEngine:
    """A real BarkEngine that remembers every request it generated and the result it gave."""

    def __init__(self, engine):
        self._engine = engine
        self.generated: list[tuple] = []  # (request, result) in generation order

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, requests, batch_size=None, progress=None):
        results = self._engine.generate(requests, batch_size=batch_size, progress=progress)
        self.generated.extend(zip(requests, results))
        return results


@pytest.fixture(scope="module")
def engine(tiny_weights):
    from pipeline.batch.stages.engine import load_engine

    return load_engine(ModelConfig(weights=str(tiny_weights), device="cpu"))


def run_stage(engine, continuity: str, reset_every: int = 4):
    cfg = validate_config({
        "input": {"path": "m.parquet"}, "output": {"path": "out", "format": "wav"}, "model": {"weights": "w"},
        # Random weights never stop on their own: 0.2 s per chunk; no gates, so no retries.
        "generation": {"voice": PRESET, "max_duration": 0.2, "continuity": continuity, "reset_every": reset_every,
                       "text_temp": 0.0, "waveform_temp": 0.0},
        "quality": {"enabled": False}, "compute": {"batch_size": 4},
    })  # fmt: skip
    recorder = RecordingEngine(engine)
    from pipeline.batch.stages.engine import EngineStage

    stage = EngineStage(cfg.model, cfg.generation, cfg.quality, cfg.compute, engine_factory=lambda: recorder)
    table = run_stages(pa.table({"id": ["row"], "text": [FOUR]}), cfg, stage=stage)
    row = table.to_pylist()[0]
    assert row["ok"], row["error"]
    assert row["n_chunks"] == 4 and len(row["chunks"]) == 4
    audio, sr = sf.read(io.BytesIO(row["audio"]), dtype="float32")
    assert audio.ndim == 1 and len(audio) == pytest.approx(row["duration_s"] * sr, abs=1)
    by_text = {request.text: (request, result) for request, result in recorder.generated}
    assert sorted(by_text) == sorted(TEXTS) and len(recorder.generated) == 4  # each chunk once
    if continuity != "fixed":  # a chain is sequential; fixed sorts a window's chunks by length
        assert [request.text for request, _ in recorder.generated] == TEXTS
    return [by_text[t] for t in TEXTS], engine.load_voice(PRESET)


def same_voice(voice, codes) -> bool:
    return all(np.array_equal(getattr(voice, k), getattr(codes, k)) for k in ("semantic", "coarse", "fine"))


def test_fixed_uses_the_row_voice_for_every_chunk(engine):
    chunks, preset = run_stage(engine, "fixed")
    assert all(same_voice(request.voice, preset) for request, _ in chunks)


def test_chain_speaks_each_chunk_in_the_previous_chunks_voice(engine):
    chunks, preset = run_stage(engine, "chain")
    assert same_voice(chunks[0][0].voice, preset)
    for k in range(1, 4):
        voice, previous = chunks[k][0].voice, chunks[k - 1][1]
        assert same_voice(voice, previous) and not same_voice(voice, preset), k


def test_chain_reset_every_2_goes_back_to_the_row_voice_at_chunk_2(engine):
    chunks, preset = run_stage(engine, "chain-reset-every", reset_every=2)
    assert [same_voice(request.voice, preset) for request, _ in chunks] == [True, False, True, False]
    assert same_voice(chunks[1][0].voice, chunks[0][1]) and same_voice(chunks[3][0].voice, chunks[2][1])
