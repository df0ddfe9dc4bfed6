"""bench/scale.py: its manifest is deterministic prose, its growth ratios are right, and a tiny run measures
every step it is asked for. Asserts what the harness records, never how fast anything is."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

SCALE = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_scale", SCALE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_manifest_is_deterministic_prose_of_one_to_three_sentences_some_with_numbers(tmp_path):
    bench = load_bench()
    bench.write_manifest(tmp_path / "a.parquet", 300)
    bench.write_manifest(tmp_path / "b.parquet", 300)
    a = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert a == pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert [r["id"] for r in a] == [f"row{i:07d}" for i in range(300)]
    # Sentence ends; "Dr. Patel" and "Mr. Alvarez" are abbreviations (the sentence splitter must see them so too).
    sentences = [len(re.findall(r"(?<!Dr)(?<!Mr)[.!?](?= [A-Z]|$)", r["text"])) for r in a]
    assert set(sentences) == {1, 2, 3}
    with_numbers = sum(bool(re.search(r"\d", r["text"])) for r in a)
    assert 0.2 * 300 < with_numbers < 0.9 * 300


def test_growth_ratios_and_a_timed_out_larger_size_is_a_lower_bound():
    bench = load_bench()

    def step(wall, rss, timed_out=False):
        return {
            "wall_s": wall,
            "peak_rss_mb": rss,
            "tree_pss_mb": rss,
            "timed_out": timed_out,
            "returncode": -9 if timed_out else 0,
        }

    results = {
        "10": {"validate": step(1.0, 100), "run": step(10.0, 200)},
        "100": {"validate": step(12.0, 150), "run": step(60.0, 400, timed_out=True)},
    }
    ratios = bench.growth(results, ["validate", "run", "report"])
    assert ratios["validate"]["100/10"] == {
        "rows": 10.0,
        "wall": 12.0,
        "wall_is_lower_bound": False,
        "peak_rss": 1.5,
        "tree_pss": 1.5,
    }
    assert ratios["run"]["100/10"]["wall_is_lower_bound"] and ratios["run"]["100/10"]["wall"] == 6.0
    assert "report" not in ratios


def test_a_tiny_run_records_both_steps_with_numbers(tmp_path):
    out = tmp_path / "scale.json"
    cmd = [sys.executable, str(SCALE), "--sizes", "200", "--steps", "validate,dry-run", "--out", str(tmp_path),
           "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]["200"]
    assert results["manifest"]["rows"] == 200
    for name in ("validate", "dry-run"):
        r = results[name]
        assert r["returncode"] == 0 and not r["timed_out"], r
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 0 and 0 <= r["sys_s"] <= r["cpu_s"]
        assert isinstance(r["list_calls"]["total"], int)
    # The dry run plans resume from the output's committed parts: at least one listing.
    assert results["dry-run"]["list_calls"]["total"] >= 1
    assert "dry-run" in done.stdout and "validate" in done.stdout


def test_a_step_records_its_resident_memory_over_time(tmp_path, monkeypatch):
    bench = load_bench()
    monkeypatch.setattr(bench, "RSS_EVERY_S", 0.2)
    # Holds ~5 MB, then ~200 MB: the series shows the step's growth, not only its peak.
    script = "import time; time.sleep(0.6); held = bytearray(b'x') * (200 * 2**20); time.sleep(0.8)"
    result = bench.measure([sys.executable, "-c", script], {bench.COUNTS_ENV: str(tmp_path)}, 30, tmp_path / "log")
    series = result["rss_mb_series"]
    assert result["returncode"] == 0 and result["rss_every_s"] == 0.2 and len(series) >= 4
    assert series[0] < 100 and max(series) > 200 and max(series) <= result["peak_rss_mb"] + 1
