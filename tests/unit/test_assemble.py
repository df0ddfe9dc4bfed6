"""Tests for pipeline.audio.assemble: trimming, joining with pauses, loudness and encoding."""

import io

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from pipeline.audio.assemble import PEAK_LIMIT, encode_audio, join_chunks, normalize_loudness, trim_silence

SR = 24_000


def _tone(seconds: float, amp: float = 0.3, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_trim_silence_keeps_margin():
    audio = np.concatenate([np.zeros(SR), _tone(0.5), np.zeros(SR)])
    out = trim_silence(audio, SR, keep_ms=50)
    assert out.dtype == np.float32
    assert abs(len(out) - (0.5 + 0.1) * SR) <= 0.02 * SR
    assert np.max(np.abs(out)) == pytest.approx(0.3, abs=1e-3)


def test_trim_silence_of_silence_is_empty():
    assert trim_silence(np.zeros(SR, np.float32), SR).size == 0
    assert trim_silence(np.zeros(0, np.float32), SR).size == 0


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
    loud = np.array([1.5, -2.0, np.nan, 0.1], np.float32)
    out = join_chunks([loud], SR)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= PEAK_LIMIT


def test_join_empty_and_bad_breaks():
    assert join_chunks([], SR).size == 0
    with pytest.raises(ValueError, match="paragraph_breaks"):
        join_chunks([_tone(0.1), _tone(0.1)], SR, paragraph_breaks=[False])
    with pytest.raises(ValueError, match="shape"):
        join_chunks([np.zeros((2, 10))], SR)


def test_loudness_reaches_target():
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(2 * SR)).astype(np.float32)
    out, applied = normalize_loudness(audio, SR, target_lufs=-20.0)
    assert applied and out.dtype == np.float32
    assert pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64)) == pytest.approx(-20.0, abs=0.2)


def test_loudness_guards_peaks():
    audio = np.zeros(2 * SR, np.float32)
    audio[::SR // 10] = 0.9  # sparse spikes: quiet overall, so a big gain would clip them
    out, applied = normalize_loudness(audio, SR, target_lufs=-5.0)
    assert applied and np.max(np.abs(out)) <= PEAK_LIMIT + 1e-6


@pytest.mark.parametrize("audio", [_tone(0.1), np.zeros(2 * SR, np.float32), np.zeros(0, np.float32)])
def test_loudness_leaves_short_or_silent_audio(audio):
    out, applied = normalize_loudness(audio, SR)
    assert not applied and np.array_equal(out, audio)


@pytest.mark.parametrize("fmt, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_encode_round_trips(fmt, subtype):
    audio = _tone(0.5)
    data = encode_audio(audio, SR, fmt)
    info = sf.info(io.BytesIO(data))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == subtype
    decoded, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == SR and abs(len(decoded) - len(audio)) <= 0.01 * SR
    if fmt != "ogg":
        assert np.max(np.abs(decoded - audio)) < 1e-3


def test_encode_rejects_unknown_format():
    with pytest.raises(ValueError, match="mp3"):
        encode_audio(_tone(0.1), SR, "mp3")
