"""Encoding mono PCM into audio file bytes (wav, flac, ogg, mp3, opus), written in blocks."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

# The loudest float sample we let out; 1.0 itself wraps to -32768 in some PCM_16 writers.
PEAK_LIMIT = 0.999
# Seconds of audio handed to libsndfile per write call. libsndfile 1.2.2 (soundfile 0.14)
# segfaults writing Vorbis of more than ~120 s in one call; blocks of a few seconds never do,
# and the scratch buffer of one block is all the extra memory a float encode needs.
ENCODE_BLOCK_S = 4.0
# Sample rates the MPEG-1/2/2.5 layer III encoder (LAME) accepts.
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# Sample rates Opus codes natively (libsndfile does not resample).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


@dataclass(frozen=True)
class Format:
    """How one `output.format` is written: libsndfile container and subtype, file extension."""

    container: str
    subtype: str
    extension: str
    rates: tuple[int, ...] | None = None  # None: any rate


FORMATS = {
    "wav": Format("WAV", "PCM_16", ".wav"),
    "flac": Format("FLAC", "PCM_16", ".flac"),
    "ogg": Format("OGG", "VORBIS", ".ogg"),
    "mp3": Format("MP3", "MPEG_LAYER_III", ".mp3", MP3_RATES),
    "opus": Format("OGG", "OPUS", ".opus", OPUS_RATES),
}


def get_format(fmt: str) -> Format:
    """The Format named `fmt`; a ValueError listing the allowed names otherwise."""
    try:
        return FORMATS[fmt]
    except (KeyError, TypeError):
        raise ValueError(f"audio format {fmt!r} is not supported; use one of {sorted(FORMATS)}") from None


def extension(fmt: str) -> str:
    """File extension, with its dot, of audio encoded as `fmt` (e.g. 'opus' -> '.opus')."""
    return get_format(fmt).extension


def encode_audio(audio: np.ndarray, sr: int, fmt: str, *, block_s: float = ENCODE_BLOCK_S) -> bytes:
    """Encode mono audio [N] (float in [-1, 1] or int16 PCM) as `fmt` file bytes.

    Float audio has NaN/inf zeroed and peaks clipped to ±PEAK_LIMIT block by block (the
    input is never copied whole nor modified); int16 goes to libsndfile as it is.
    """
    spec = get_format(fmt)
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono of shape [N], got shape {audio.shape}")
    if not (audio.dtype == np.int16 or np.issubdtype(audio.dtype, np.floating)):
        raise ValueError(f"audio must be float or int16 PCM, got dtype {audio.dtype}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive int sample rate, got {sr!r}")
    if spec.rates is not None and sr not in spec.rates:
        raise ValueError(f"{fmt} cannot be written at {sr} Hz; it takes {list(spec.rates)} Hz (resample first)")
    if block_s <= 0:
        raise ValueError(f"block_s must be > 0 seconds, got {block_s!r}")
    block = max(1, int(block_s * sr))
    scratch = None if audio.dtype == np.int16 else np.empty(min(block, len(audio)), np.float32)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, 1, format=spec.container, subtype=spec.subtype) as out:
        for start in range(0, len(audio), block):
            piece = audio[start : start + block]
            if scratch is not None:
                piece = _guarded(piece, scratch[: len(piece)])
            out.write(piece)
    return buf.getvalue()


def _guarded(piece: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`piece` clipped to ±PEAK_LIMIT with NaN as 0, written into float32 `out` (same length)."""
    np.clip(piece, -PEAK_LIMIT, PEAK_LIMIT, out=out)  # ±inf land on the limits here
    return np.nan_to_num(out, copy=False, nan=0.0)
