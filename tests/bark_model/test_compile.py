"""torch.compile'd decode steps (inductor, on CPU here): greedy tokens equal eager; failures fall back once."""

import logging

import numpy as np
import pytest
import torch

import bark_model.compile as compile_mod
from bark_model import BarkEngine, GenerationRequest
from bark_model.compile import resolve_compile

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# Two rows of different lengths, one with a voice (coarse history): rows sit at different positions.
ROWS = [GenerationRequest.greedy("Compiled steps, same tokens.", max_duration_s=1.0),
        GenerationRequest.greedy("A voice row [laughs].", "v2/en_speaker_0", max_duration_s=0.7)]


@pytest.fixture(scope="module")
def eager_results(tiny_suno):
    return BarkEngine.from_dir(tiny_suno, device=DEVICE, compile=False, cuda_graphs=False).generate(ROWS)  # all eager


def _assert_same_tokens(got, want):
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.semantic, w.semantic)
        np.testing.assert_array_equal(g.coarse, w.coarse)
        np.testing.assert_array_equal(g.fine, w.fine)


def test_compile_switch_defaults_to_cuda_only():
    assert resolve_compile(None, torch.device("cuda")) is True
    assert resolve_compile(None, torch.device("cpu")) is False
    assert resolve_compile(True, torch.device("cpu")) is True
    with pytest.raises(ValueError, match="compile must be True, False or None"):
        resolve_compile("yes", torch.device("cpu"))


def test_forced_compile_failure_falls_back_with_one_log_line(tiny_suno, eager_results, monkeypatch, caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("forced failure for the test")

    monkeypatch.setattr(compile_mod, "BACKEND", broken_backend)
    monkeypatch.setattr(compile_mod, "_REPORTED", set())
    engine = BarkEngine.from_dir(tiny_suno, device=DEVICE, compile=True)
    with caplog.at_level(logging.DEBUG, logger="bark_model"):
        got = engine.generate(ROWS)
        engine.generate(ROWS[:1])  # a second call: nothing new to say
    _assert_same_tokens(got, eager_results)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "forced failure for the test" in warnings[0].getMessage() and "uncompiled" in warnings[0].getMessage()
    assert not any(ws.runner.compiled for ws in engine._workspaces.values())


@pytest.mark.slow  # inductor's C++ build of two step bodies: ~2-3 min cold on 2 cores, ~15 s with its disk cache
def test_compiled_steps_give_the_eager_greedy_tokens(tiny_suno, eager_results, caplog):
    engine = BarkEngine.from_dir(tiny_suno, device=DEVICE, compile=True)
    with caplog.at_level(logging.WARNING, logger="bark_model"):
        got = engine.generate(ROWS)
        again = engine.generate(ROWS)  # compiled code (and on CUDA, graphs) reused: no new warm-up
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # no silent fallback
    assert all(ws.runner.compiled for ws in engine._workspaces.values())
    _assert_same_tokens(got, eager_results)
    _assert_same_tokens(again, eager_results)
    assert engine.warmup_s > 0 and engine.last_warmup_s == 0.0


def test_attention_probe_names_a_backend_that_runs():
    from bark_model.sdpa_check import NAMES, priority_order, probe

    assert set(priority_order()) == set(NAMES)
    for q_len, kv_len, masked in ((1, 40, True), (24, 24, True), (32, 32, False)):
        name = probe(torch.device("cpu"), torch.float32, 2, 32, q_len, kv_len, masked)
        assert name in NAMES.values(), name
