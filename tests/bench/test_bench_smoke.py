"""The engine benchmark harness: a micro run (tiny weights, 4 tokens) writes a complete report.

Asserts what the harness computes (schema, ratios, roofline, agreement), never how fast anything is.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_roofline_arithmetic():
    from bark_model.random_weights import model_configs

    roofline = load("roofline")
    cfg = model_configs("small")["text"]
    params = roofline.step_weight_params(cfg.n_layer, cfg.n_embd, cfg.output_vocab_size)
    assert params == 12 * (12 * 768 * 768 + 4 * 768) + 768 + 768 * 10_048
    one = roofline.decode_step_bytes(cfg, 1, 300, 2, 2)
    assert one == params * 2 + 2 * 12 * 300 * 768 * 2
    # More rows share the weights: tokens/s rises with batch, and never past the KV-only bound.
    ceilings = [roofline.semantic_ceiling(cfg, b, 150, 2, 2, 1e12) for b in (1, 8, 64)]
    assert ceilings == sorted(ceilings)
    assert len(roofline.coarse_steps(150)) == 450  # floor(150 * 3.006 / 2) frames x 2 codebooks
    assert max(roofline.coarse_steps(768)) <= 257 + 630 + 59


def test_fixed_length_durations():
    systems = load("systems")
    from bark_model.semantic import max_tokens_for_duration

    for n in (1, 8, 150, 256, 700, 768):
        assert max_tokens_for_duration(systems.duration_for_tokens(n)) == n


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("transformers", reason="the harness compares against transformers' BarkModel")
    tmp = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(BENCH / "engine_bench.py"), "--dry", "--batches", "1", "--hf-batches", "1",
           "--extra-batches", "1", "--tokens", "4", "--agree-tokens", "4", "--precisions", "fp32,bf16",
           "--bandwidth-gbs", "10", "--out", str(tmp), "--weights-dir", str(tmp / "w"), "--json", str(tmp / "r.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "audio-s/s" in proc.stdout and "roofline: 10.0 GB/s (given)" in proc.stdout
    return json.loads((tmp / "r.json").read_text())


def test_report_schema(report):
    assert report["schema"] == "barkpipe.engine_bench/1"
    assert {"hardware", "torch", "date", "commit", "line"} <= set(report["machine"])
    assert report["settings"]["tokens"] == 4 and report["bandwidth_gb_s"] == 10
    rows = {(r["system"], r["precision"], r["batch"]): r for r in report["rows"]}
    assert set(rows) == {("ours", "fp32", 1), ("ours", "bf16", 1), ("hf", "fp32", 1)}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["semantic_tokens_per_row"] == [4], "every system makes exactly --tokens semantic tokens"
        assert set(row["stage_s"]) == {"semantic", "coarse", "fine", "decode"}
        for key in ("audio_s_per_s", "semantic_tok_s", "coarse_tok_s", "fine_frames_s", "decode_audio_s_per_s", "peak_mb"):
            assert row[key] > 0, key
        assert row["audio_s_per_s"] == pytest.approx(row["audio_s"] / row["wall_s"])
        assert set(row["roofline"]) == {"semantic_tok_s", "coarse_tok_s", "audio_s_per_s"}


def test_ratios_against_hf(report):
    rows = {(r["system"], r["precision"]): r for r in report["rows"]}
    hf = rows["hf", "fp32"]
    for precision in ("fp32", "bf16"):
        ours = rows["ours", precision]
        assert ours["ratio_vs_hf"] == pytest.approx(ours["audio_s_per_s"] / hf["audio_s_per_s"])
        assert ours["ratios"]["hf-fp32"] == ours["ratio_vs_hf"]
    assert hf["ratio_vs_hf"] is None  # HF is the reference, not compared with itself


def test_agreement_reported(report):
    [entry] = report["agreement"]
    assert entry["precision"] == "bf16" and entry["status"] == "ok"
    for key in ("semantic", "coarse", "fine", "all"):
        assert 0 <= entry[key] <= 1


def test_unavailable_config_is_a_row_not_a_crash():
    bench = load("engine_bench")
    report = {"machine": {"line": "m"}, "bandwidth_gb_s": 1.0, "bandwidth_source": "given",
              "rows": [{"system": "ours", "size": "tiny", "precision": "int8", "tokens": 4, "batch": None,
                        "status": "n/a", "error": "ModuleNotFoundError: No module named 'bark_model.quantize'"}],
              "agreement": [{"size": "tiny", "precision": "int8", "status": "n/a"}]}  # fmt: skip
    bench.add_ratios(report["rows"], "fp32")
    text = "\n".join(bench.table_lines(report))
    assert "n/a: ModuleNotFoundError" in text and "int8 vs fp32 (greedy): n/a" in text
