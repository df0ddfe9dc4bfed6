"""Tests for pipeline.audio.quality: the measures and the gates on synthetic audio."""

import numpy as np
import pytest

from pipeline.audio.quality import GateLimits, check_gates, measure_chunk

SR = 24_000


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise shaped by a 4 Hz syllable envelope, with a 0.3 s gap every 2 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    envelope[(t % 2.0) > 1.7] = 0.0
    return (0.1 * envelope * rng.standard_normal(t.size)).astype(np.float32)


def test_speech_like_signal_passes():
    measures = measure_chunk(_speech_like(8.0), SR, text_est_seconds=8.0)
    assert measures["duration_ratio"] == pytest.approx(1.0)
    assert 0.25 <= measures["longest_silence_s"] <= 0.35
    assert check_gates(measures) == []


def test_long_silence_fails():
    audio = np.concatenate([_speech_like(2.0), np.zeros(3 * SR, np.float32), _speech_like(2.0, 1)])
    measures = measure_chunk(audio, SR, 7.0)
    assert measures["longest_silence_s"] >= 3.0
    assert check_gates(measures) == ["longest_silence"]


def test_all_silence_fails_silence_and_level():
    measures = measure_chunk(np.zeros(4 * SR, np.float32), SR, 4.0)
    assert set(check_gates(measures)) == {"longest_silence", "rms_low"}


def test_clipping_fails():
    audio = np.sign(_speech_like(4.0)).astype(np.float32)  # a hard-clipped square-ish wave
    measures = measure_chunk(audio, SR, 4.0)
    assert measures["clipped_fraction"] > 0.5
    assert {"clipped_fraction", "rms_high"} <= set(check_gates(measures))


@pytest.mark.parametrize("seconds, gate", [(12.0, "duration_ratio_high"), (1.0, "duration_ratio_low")])
def test_duration_ratio_fails(seconds, gate):
    measures = measure_chunk(_speech_like(seconds), SR, text_est_seconds=4.0)
    assert check_gates(measures) == [gate]


def test_empty_audio_is_measured_without_crash():
    measures = measure_chunk(np.zeros(0, np.float32), SR, 2.0)
    assert measures["duration_s"] == 0 and "duration_ratio_low" in check_gates(measures)


def test_nan_measure_fails_its_gate():
    measures = measure_chunk(_speech_like(3.0), SR, 3.0)
    measures["rms_db"] = float("nan")
    assert check_gates(measures) == ["rms_low", "rms_high"]


def test_custom_limits_and_missing_keys():
    measures = measure_chunk(_speech_like(3.0), SR, 3.0)
    assert check_gates(measures, GateLimits(max_silence_s=0.1)) == ["longest_silence"]
    with pytest.raises(ValueError, match="rms_db"):
        check_gates({k: v for k, v in measures.items() if k != "rms_db"})


@pytest.mark.parametrize("kwargs", [
    {"min_duration_ratio": 3.0}, {"max_silence_s": 0.0}, {"max_clipped_fraction": 2.0},
    {"min_rms_db": -2.0},
])
def test_gate_limits_validate(kwargs):
    with pytest.raises(ValueError):
        GateLimits(**kwargs)


@pytest.mark.parametrize("args", [(np.zeros((2, 5)), SR, 1.0), (np.zeros(5), 0, 1.0), (np.zeros(5), SR, 0.0)])
def test_bad_measure_arguments(args):
    with pytest.raises(ValueError):
        measure_chunk(*args)
