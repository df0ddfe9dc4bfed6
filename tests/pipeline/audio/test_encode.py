"""Tests for pipeline.audio.encode: every format round trips, long Vorbis survives, bad input is refused."""

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio.encode import FORMATS, PEAK_LIMIT, encode_audio, extension

SR = 24_000


def _tone(seconds: float, amp: float = 0.3, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(data), dtype="float32")


@pytest.mark.parametrize("fmt, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_encode_round_trips(fmt, subtype):
    audio = _tone(0.5)
    data = encode_audio(audio, SR, fmt, block_s=0.1)  # several blocks
    info = sf.info(io.BytesIO(data))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == subtype
    decoded, sr = _decode(data)
    assert sr == SR and abs(len(decoded) - len(audio)) <= 0.01 * SR
    if fmt != "ogg":
        assert np.max(np.abs(decoded - audio)) < 1e-3


@pytest.mark.parametrize("fmt, container, subtype", [("mp3", "MP3", "MPEG_LAYER_III"), ("opus", "OGG", "OPUS")])
def test_lossy_formats_keep_the_duration(fmt, container, subtype):
    audio = _tone(30.0, freq=440.0)
    data = encode_audio(audio, SR, fmt)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (container, subtype, SR, 1)
    decoded, _ = _decode(data)
    assert abs(len(decoded) / SR - 30.0) < 0.1  # codec delay and frame padding only
    # It is still the tone: most of the energy sits where it was.
    level = np.sqrt(np.mean(decoded[SR:-SR] ** 2))
    assert level == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert len(data) < audio.size  # well under 8 bits a sample: it really is compressed


def test_int16_pcm_is_written_as_it_is():
    pcm = np.round(_tone(2.0) * 32767).astype(np.int16)
    for fmt in ("wav", "flac"):
        decoded, _ = sf.read(io.BytesIO(encode_audio(pcm, SR, fmt, block_s=0.3)), dtype="int16")
        assert np.array_equal(decoded, pcm)
    decoded, _ = _decode(encode_audio(pcm, SR, "ogg"))
    assert abs(len(decoded) - len(pcm)) <= 0.01 * SR


def test_float_audio_is_guarded_without_touching_the_input():
    audio = np.array([0.5, 1.5, -2.0, np.nan, np.inf, -np.inf] * 100, np.float32)
    kept = audio.copy()
    decoded, _ = _decode(encode_audio(audio, SR, "wav", block_s=0.001))
    assert np.all(np.isfinite(decoded)) and np.max(np.abs(decoded)) <= PEAK_LIMIT + 1e-4
    assert decoded[3] == 0.0 and decoded[1] == pytest.approx(PEAK_LIMIT, abs=1e-4)
    assert np.array_equal(audio, kept, equal_nan=True)
    f64, _ = _decode(encode_audio(audio.astype(np.float64), SR, "wav"))
    assert np.array_equal(f64, decoded)


def test_ten_minute_ogg_encodes_and_decodes():
    """libsndfile 1.2.2 segfaults on >~120 s of Vorbis in one write: run it where a crash is a failure."""
    script = textwrap.dedent(
        """
        import io
        import numpy as np, soundfile as sf
        from pipeline.audio.encode import encode_audio
        sr = 24000
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal(600 * sr)).astype(np.float32)
        data = encode_audio(audio, sr, "ogg")
        n = sum(len(b) for b in sf.blocks(io.BytesIO(data), blocksize=10 * sr, dtype="float32"))
        print(n)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"encoder process died (rc {done.returncode}): {done.stderr[-2000:]}"
    assert abs(int(done.stdout.split()[-1]) - 600 * SR) <= 0.01 * SR


def test_unknown_format_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'aac'.*\['flac', 'mp3', 'ogg', 'opus', 'wav'\]"):
        encode_audio(_tone(0.1), SR, "aac")
    with pytest.raises(ValueError, match="opus"):
        extension("m4a")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="22050 Hz"):
        encode_audio(_tone(0.1), 22050, "opus")
    with pytest.raises(ValueError, match="shape"):
        encode_audio(np.zeros((2, 10), np.float32), SR, "wav")
    with pytest.raises(ValueError, match="int16"):
        encode_audio(np.zeros(10, np.int32), SR, "wav")
    with pytest.raises(ValueError, match="sample rate"):
        encode_audio(_tone(0.1), 0, "wav")


def test_extension_per_format():
    assert {fmt: extension(fmt) for fmt in FORMATS} == {
        "wav": ".wav", "flac": ".flac", "ogg": ".ogg", "mp3": ".mp3", "opus": ".opus"}
