"""Tests for pipeline.audio.assemble: trimming, joining with pauses, loudness (against pyloudnorm)."""

import tracemalloc

import numpy as np
import pyloudnorm
import pytest

from pipeline.audio.assemble import (
    PEAK_LIMIT,
    integrated_loudness,
    join_chunks,
    normalize_loudness,
    trim_silence,
)

SR = 24_000


def _tone(seconds: float, amp: float = 0.3, freq: float = 220.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _bursts(seconds: float, seed: int = 0, sr: int = SR, amp: float = 0.1) -> np.ndarray:
    """Speech-like: noise under a 4 Hz syllable envelope, 0.3 s of silence every 2 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    envelope[(t % 2.0) > 1.7] = 0.0
    return (amp * envelope * rng.standard_normal(t.size)).astype(np.float32)


def _reference_join(chunks, sr, pause_s, paragraph_pause_s, breaks, crossfade_ms):
    """The straightforward join: concatenate the whole track again for every chunk."""
    fade_len = int(round(crossfade_ms / 1000 * sr))
    out = np.zeros(0, np.float32)
    for i, chunk in enumerate(chunks):
        chunk = np.asarray(chunk).astype(np.float32)
        if i == 0:
            out = chunk.copy()
            continue
        pause = int(round((paragraph_pause_s if breaks[i - 1] else pause_s) * sr))
        fade = min(fade_len, len(out), len(chunk))
        if fade == 0:
            out = np.concatenate([out, np.zeros(pause, np.float32), chunk])
            continue
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        head = chunk.copy()
        if pause > 0:
            out = out.copy()
            out[-fade:] *= ramp[::-1]
            head[:fade] *= ramp
            out = np.concatenate([out, np.zeros(pause, np.float32), head])
        else:
            mixed = out[-fade:] * ramp[::-1] + head[:fade] * ramp
            out = np.concatenate([out[:-fade], mixed, head[fade:]])
    out = np.nan_to_num(out, nan=0.0, posinf=PEAK_LIMIT, neginf=-PEAK_LIMIT)
    return np.clip(out, -PEAK_LIMIT, PEAK_LIMIT).astype(np.float32)


def _many_chunks(n: int, seed: int = 1) -> list[np.ndarray]:
    """Chunks of varied length, some shorter than a crossfade and some empty."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([0, 3, 100, 239, 2400, 7000, 24000], size=n)
    return [(0.3 * rng.standard_normal(k)).astype(np.float32) for k in lengths]


def test_trim_silence_keeps_margin():
    audio = np.concatenate([np.zeros(SR), _tone(0.5), np.zeros(SR)])
    out = trim_silence(audio, SR, keep_ms=50)
    assert out.dtype == np.float32
    assert abs(len(out) - (0.5 + 0.1) * SR) <= 0.02 * SR
    assert np.max(np.abs(out)) == pytest.approx(0.3, abs=1e-3)


def test_trim_silence_of_silence_is_empty():
    assert trim_silence(np.zeros(SR, np.float32), SR).size == 0
    assert trim_silence(np.zeros(0, np.float32), SR).size == 0
    assert trim_silence(np.zeros(SR, np.int16), SR).size == 0


def test_trim_silence_int16_matches_float_and_copies_nothing():
    audio = np.concatenate([np.zeros(SR + 7), _tone(0.5), 1e-4 * np.ones(SR)]).astype(np.float32)
    pcm = np.round(audio * 32768).astype(np.int16)
    out_f, out_i = trim_silence(audio, SR), trim_silence(pcm, SR)
    assert out_i.dtype == np.int16 and len(out_i) == len(out_f)
    assert np.shares_memory(out_i, pcm) and np.shares_memory(out_f, audio)  # views, not copies


def test_join_inserts_pauses_and_paragraph_pauses():
    chunks = [_tone(0.5), _tone(0.4), _tone(0.3)]
    out = join_chunks(chunks, SR, pause_s=0.25, paragraph_pause_s=0.7,
                      paragraph_breaks=[True, False, False], crossfade_ms=10)
    assert out.dtype == np.float32
    assert len(out) == int(1.2 * SR) + int(0.7 * SR) + int(0.25 * SR)
    # Layout: chunk 0 [0, 0.5) s, paragraph pause, chunk 1 [1.2, 1.6), pause, chunk 2 [1.85, 2.15).
    assert not np.any(out[int(0.5 * SR): int(1.2 * SR)])
    assert not np.any(out[int(1.6 * SR): int(1.85 * SR)])
    for start, end in ((0.1, 0.4), (1.3, 1.5), (1.95, 2.05)):
        assert np.max(np.abs(out[int(start * SR): int(end * SR)])) == pytest.approx(0.3, abs=1e-3)
    # The edges fade to zero, so no click where audio meets the pause.
    assert abs(out[int(0.5 * SR) - 1]) < 1e-3 and abs(out[int(1.2 * SR)]) < 1e-3


def test_join_without_pause_crossfades():
    a, b = np.ones(1000, np.float32) * 0.5, np.ones(1000, np.float32) * 0.5
    out = join_chunks([a, b], SR, pause_s=0.0, crossfade_ms=10)
    fade = int(0.010 * SR)
    assert len(out) == 2000 - fade
    assert np.allclose(out, 0.5, atol=1e-6)  # a linear crossfade of equal levels is flat


def test_join_guards_clipping_and_nan():
    loud = np.array([1.5, -2.0, np.nan, 0.1, np.inf], np.float32)
    out = join_chunks([loud], SR)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= PEAK_LIMIT
    assert np.isnan(loud[2])  # the caller's chunk is left alone


def test_join_empty_and_bad_breaks():
    assert join_chunks([], SR).size == 0
    with pytest.raises(ValueError, match="paragraph_breaks"):
        join_chunks([_tone(0.1), _tone(0.1)], SR, paragraph_breaks=[False])
    with pytest.raises(ValueError, match="shape"):
        join_chunks([np.zeros((2, 10))], SR)


@pytest.mark.parametrize("pause_s, paragraph_pause_s", [(0.25, 0.7), (0.0, 0.5), (0.0, 0.0)])
def test_join_of_200_chunks_equals_the_reference(pause_s, paragraph_pause_s):
    chunks = _many_chunks(200)
    breaks = list(np.random.default_rng(2).random(200) < 0.2)
    got = join_chunks(chunks, SR, pause_s=pause_s, paragraph_pause_s=paragraph_pause_s,
                      paragraph_breaks=breaks, crossfade_ms=10)
    want = _reference_join(chunks, SR, pause_s, paragraph_pause_s, breaks, 10)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_join_allocates_one_track():
    """Peak memory stays near one output buffer; copying per chunk would hold two tracks."""
    chunks = [_bursts(3.0, seed=i) for i in range(60)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        out = join_chunks(chunks, SR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before <= out.nbytes + 4 * chunks[0].nbytes


def test_join_takes_int16_pcm():
    floats = [_bursts(1.0, seed=i) for i in range(5)]
    pcm = [np.round(f * 32768).astype(np.int16) for f in floats]
    got = join_chunks(pcm, SR, pause_s=0.1, crossfade_ms=10)
    want = join_chunks([p.astype(np.float32) / 32768 for p in pcm], SR, pause_s=0.1, crossfade_ms=10)
    assert got.dtype == np.float32 and np.allclose(got, want, atol=1e-7)


def _signals(sr: int) -> dict[str, np.ndarray]:
    gap = np.zeros(int(1.5 * sr), np.float32)
    rng = np.random.default_rng(3)
    return {
        "noise": (0.05 * rng.standard_normal(int(7.3 * sr))).astype(np.float32),
        "bursts": _bursts(20.0, sr=sr),
        "bursts_with_gaps": np.concatenate([_bursts(4.0, 1, sr), gap, _bursts(3.0, 2, sr, 0.01), gap, gap]),
        "tones": np.concatenate([_tone(2.0, 0.5, 997, sr), gap, _tone(1.1, 0.05, 60, sr), _tone(3.0, 0.2, 5000, sr)]),
        "quiet_and_loud": np.concatenate([_tone(2.0, 0.0005, 440, sr), _tone(1.0, 0.5, 440, sr)]),
        "one_block": _tone(0.41, 0.3, 1000, sr),
    }


@pytest.mark.parametrize("sr", [24_000, 16_000, 44_100, 11_025])
def test_loudness_agrees_with_pyloudnorm(sr):
    for name, audio in _signals(sr).items():
        want = pyloudnorm.Meter(sr).integrated_loudness(audio.astype(np.float64))
        got = integrated_loudness(audio, sr)
        assert got == pytest.approx(want, abs=0.01), name  # the brief allows 0.1 LU


def test_loudness_of_audio_under_the_gate_is_minus_infinity():
    audio = _tone(2.0, 1e-5)
    assert pyloudnorm.Meter(SR).integrated_loudness(audio.astype(np.float64)) == float("-inf")
    assert integrated_loudness(audio, SR) == float("-inf")
    with pytest.raises(ValueError, match="shorter"):
        integrated_loudness(_tone(0.1), SR)


def test_loudness_reaches_target():
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(2 * SR)).astype(np.float32)
    out, applied = normalize_loudness(audio, SR, target_lufs=-20.0)
    assert applied and out.dtype == np.float32
    assert pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64)) == pytest.approx(-20.0, abs=0.2)


def test_loudness_takes_int16_pcm():
    pcm = np.round(_bursts(5.0) * 32768).astype(np.int16)
    out, applied = normalize_loudness(pcm, SR, target_lufs=-23.0)
    assert applied and out.dtype == np.float32
    assert pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64)) == pytest.approx(-23.0, abs=0.05)


def test_loudness_guards_peaks():
    audio = np.zeros(2 * SR, np.float32)
    audio[::SR // 10] = 0.9  # sparse spikes: quiet overall, so a big gain would clip them
    out, applied = normalize_loudness(audio, SR, target_lufs=-5.0)
    assert applied and np.max(np.abs(out)) <= PEAK_LIMIT + 1e-6


@pytest.mark.parametrize("audio", [_tone(0.1), np.zeros(2 * SR, np.float32), np.zeros(0, np.float32)])
def test_loudness_leaves_short_or_silent_audio(audio):
    out, applied = normalize_loudness(audio, SR)
    assert not applied and np.array_equal(out, audio)
