"""bench/pipeline_efficiency.py's pieces: the stand-in engine plugs in where the engine does, costs no CPU,
and its book text gives realistic chunks. Asserts what the harness does, never how fast the pipeline is."""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
from support.stages import config, run_stages

from pipeline.batch.stages.engine import EngineStage

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pipeline_efficiency.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline_efficiency", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_book_text_splits_into_chunks_of_5_to_14_seconds():
    from pipeline.text.chunks import split_text
    from pipeline.text.segment import estimate_seconds

    bench = load_bench()
    text = bench.book_text(3.0, seed=1)
    assert 180 <= estimate_seconds(text) <= 240
    lengths = [c.est_seconds for c in split_text(text)]
    assert max(lengths) <= 14.0 and statistics.median(lengths) >= 5.0


def test_the_stand_in_engine_runs_in_the_engine_stage_at_its_rate_without_cpu():
    bench = load_bench()
    rate = 400.0
    cfg = config(segment={"target_seconds": 12.0, "max_seconds": 14.0}, compute={"batch_size": 8})
    stage = EngineStage(cfg.model, cfg.generation, cfg.quality, cfg.compute,
                        engine_factory=lambda: bench.StandInEngine(rate))
    table = pa.table({"id": ["a"], "text": [bench.book_text(1.0, seed=2)]})
    row = run_stages(table, cfg, stage=stage).to_pylist()[0]
    assert row["ok"] and row["n_chunks"] >= 4
    generated = sum(c["duration_s"] for c in row["chunks"])
    assert stage.engine_seconds >= generated / rate * 0.95  # it sleeps as long as the rate says


def test_the_stand_in_engine_sleeps_rather_than_computes():
    from bark_model import GenerationRequest

    bench = load_bench()
    engine = bench.StandInEngine(100.0)
    requests = [GenerationRequest.simple("Twelve words of plain text make about four seconds of speech here.")] * 6
    wall, cpu = time.perf_counter(), time.thread_time()
    results = engine.generate(requests)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    audio = sum(r.duration_s for r in results)
    assert wall >= audio / 100 * 0.95 and cpu < 0.25 * wall


def test_finishing_cpu_reports_each_step():
    bench = load_bench()
    costs = bench.finishing_cpu(seconds=24.0)
    assert {"trim", "join", "loudness", "encode", "total_cpu"} <= set(costs)
    assert all(v >= 0 for v in costs.values())
