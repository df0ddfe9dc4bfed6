"""Joining chunk audio into one track: silence trimming, pauses, loudness and encoding."""

from __future__ import annotations

import io

import numpy as np
import pyloudnorm
import soundfile as sf

# Frame used to decide what is silence when trimming (10 ms: finer than a syllable).
TRIM_FRAME_S = 0.010
# The loudest sample we let out; 1.0 itself wraps to -32768 in some PCM_16 writers.
PEAK_LIMIT = 0.999
# pyloudnorm's gating block (BS.1770): shorter audio has no defined loudness.
LOUDNESS_BLOCK_S = 0.4
# Container formats and the sample encoding each is written with.
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}


def trim_silence(audio: np.ndarray, sr: int, threshold_db: float = -45.0,
                 keep_ms: float = 50.0) -> np.ndarray:
    """Cut leading and trailing frames quieter than `threshold_db` dBFS, keeping `keep_ms` of margin.

    Bark pads its output with near-silence of varying length; trimming makes the
    pauses that join_chunks inserts the only pauses. All-silent audio gives an empty array.
    """
    audio = _mono_float32(audio, "audio")
    _check_rate(sr)
    frame = max(1, int(round(TRIM_FRAME_S * sr)))
    n_frames = int(np.ceil(len(audio) / frame))
    if n_frames == 0:
        return audio
    padded = np.zeros(n_frames * frame, dtype=np.float32)
    padded[: len(audio)] = audio
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return audio[:0]
    keep = int(round(keep_ms / 1000 * sr))
    start = max(0, loud[0] * frame - keep)
    end = min(len(audio), (loud[-1] + 1) * frame + keep)
    return audio[start:end]


def join_chunks(
    chunks_audio: list[np.ndarray],
    sr: int,
    *,
    pause_s: float = 0.25,
    paragraph_pause_s: float = 0.7,
    paragraph_breaks: list[bool] | None = None,
    crossfade_ms: float = 10.0,
) -> np.ndarray:
    """Concatenate chunk audio [N_i] with a pause after each chunk (longer after a paragraph).

    `paragraph_breaks[i]` is Chunk.paragraph_break_after of chunk i (the last is
    ignored). Each edge gets a `crossfade_ms` fade so no click is heard; with a zero
    pause the two chunks overlap by that much instead.
    """
    _check_rate(sr)
    if pause_s < 0 or paragraph_pause_s < 0 or crossfade_ms < 0:
        raise ValueError(
            f"pause_s, paragraph_pause_s and crossfade_ms must be >= 0, got "
            f"{pause_s!r}, {paragraph_pause_s!r}, {crossfade_ms!r}")
    breaks = [False] * len(chunks_audio) if paragraph_breaks is None else list(paragraph_breaks)
    if len(breaks) != len(chunks_audio):
        raise ValueError(
            f"paragraph_breaks has {len(breaks)} entries; it needs one per chunk ({len(chunks_audio)})")
    fade = int(round(crossfade_ms / 1000 * sr))
    out = np.zeros(0, dtype=np.float32)
    for i, chunk in enumerate(chunks_audio):
        chunk = _mono_float32(chunk, f"chunks_audio[{i}]")
        if i == 0:
            out = chunk.copy()
            continue
        pause = int(round((paragraph_pause_s if breaks[i - 1] else pause_s) * sr))
        out = _splice(out, chunk, pause, fade)
    return _guard(out)


def normalize_loudness(audio: np.ndarray, sr: int,
                       target_lufs: float = -20.0) -> tuple[np.ndarray, bool]:
    """Scale `audio` to `target_lufs` integrated loudness (ITU-R BS.1770 via pyloudnorm).

    Returns (audio, applied). Audio shorter than one 0.4 s gating block or silent
    has no loudness; it comes back unchanged with applied=False. Peaks above
    PEAK_LIMIT after the gain are scaled down, so loud targets may land a little under.
    """
    audio = _mono_float32(audio, "audio")
    _check_rate(sr)
    if not -70.0 <= target_lufs <= 0.0:
        raise ValueError(f"target_lufs must be within [-70, 0] LUFS, got {target_lufs!r}")
    if len(audio) < LOUDNESS_BLOCK_S * sr or not np.any(audio):
        return audio, False
    loudness = pyloudnorm.Meter(sr).integrated_loudness(audio.astype(np.float64))
    if not np.isfinite(loudness):
        return audio, False  # every block fell under the -70 LUFS absolute gate
    gained = audio.astype(np.float64) * 10 ** ((target_lufs - loudness) / 20)
    peak = np.max(np.abs(gained))
    if peak > PEAK_LIMIT:
        gained *= PEAK_LIMIT / peak
    return gained.astype(np.float32), True


def encode_audio(audio: np.ndarray, sr: int, fmt: str) -> bytes:
    """Encode mono float audio as wav/flac (PCM_16) or ogg (Vorbis) bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt {fmt!r} is not supported; use one of {sorted(FORMATS)}")
    audio = _guard(_mono_float32(audio, "audio"))
    _check_rate(sr)
    container, subtype = FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=container, subtype=subtype)
    return buf.getvalue()


def _splice(out: np.ndarray, chunk: np.ndarray, pause: int, fade: int) -> np.ndarray:
    fade = min(fade, len(out), len(chunk))
    if fade == 0:
        return np.concatenate([out, np.zeros(pause, np.float32), chunk])
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    head = chunk.copy()
    if pause > 0:
        # Fade out into the pause and in from it: both edges land on zero.
        out = out.copy()
        out[-fade:] *= ramp[::-1]
        head[:fade] *= ramp
        return np.concatenate([out, np.zeros(pause, np.float32), head])
    # No pause: overlap-add the last `fade` samples of one chunk with the next's first.
    mixed = out[-fade:] * ramp[::-1] + head[:fade] * ramp
    return np.concatenate([out[:-fade], mixed, head[fade:]])


def _mono_float32(audio: np.ndarray, name: str) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"{name} must be mono audio of shape [N], got shape {audio.shape}")
    return audio.astype(np.float32, copy=False)


def _check_rate(sr: int) -> None:
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive int sample rate, got {sr!r}")


def _guard(audio: np.ndarray) -> np.ndarray:
    """Replace NaN/inf with 0 and clip to ±PEAK_LIMIT so encoders never wrap around."""
    audio = np.nan_to_num(audio, nan=0.0, posinf=PEAK_LIMIT, neginf=-PEAK_LIMIT)
    return np.clip(audio, -PEAK_LIMIT, PEAK_LIMIT).astype(np.float32, copy=False)
