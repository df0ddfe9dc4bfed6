"""Per-chunk audio measures and the quality gates that flag a bad generation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Frame for the silence measure (20 ms: shorter than any real pause, longer than a stop consonant).
SILENCE_FRAME_S = 0.020
# A frame quieter than this (dBFS RMS) counts as silence; Bark's breath noise sits above it.
SILENCE_DB = -45.0
# A sample at or above this magnitude counts as clipped.
CLIP_LEVEL = 0.999
# Floor for the RMS of silent or empty audio, so measures stay finite numbers.
RMS_FLOOR_DB = -120.0
MEASURE_KEYS = ("duration_s", "expected_s", "duration_ratio", "longest_silence_s", "clipped_fraction", "rms_db")


@dataclass(frozen=True)
class GateLimits:
    """Bounds a chunk must meet (the listening checks' limits live in pipeline.audio.listen)."""

    min_duration_ratio: float = 0.4
    max_duration_ratio: float = 2.5
    max_silence_s: float = 2.0
    max_clipped_fraction: float = 0.01
    min_rms_db: float = -50.0
    max_rms_db: float = -3.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_duration_ratio < self.max_duration_ratio:
            raise ValueError(
                f"need 0 <= min_duration_ratio < max_duration_ratio, got "
                f"{self.min_duration_ratio!r} and {self.max_duration_ratio!r}"
            )
        if self.max_silence_s <= 0:
            raise ValueError(f"max_silence_s must be > 0, got {self.max_silence_s!r}")
        if not 0 <= self.max_clipped_fraction <= 1:
            raise ValueError(f"max_clipped_fraction must be within [0, 1], got {self.max_clipped_fraction!r}")
        if not self.min_rms_db < self.max_rms_db <= 0:
            raise ValueError(f"need min_rms_db < max_rms_db <= 0 dBFS, got {self.min_rms_db!r} and {self.max_rms_db!r}")


def measure_chunk(audio: np.ndarray, sr: int, text_est_seconds: float) -> dict[str, float]:
    """Measure one chunk's audio [N] against the duration its text should take."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono of shape [N], got shape {audio.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive int sample rate, got {sr!r}")
    if not text_est_seconds > 0:
        raise ValueError(f"text_est_seconds must be > 0 (Chunk.est_seconds), got {text_est_seconds!r}")
    duration = len(audio) / sr
    mean_square = float(np.mean(audio.astype(np.float64) ** 2)) if len(audio) else 0.0
    rms_db = 10 * math.log10(mean_square) if mean_square > 0 else RMS_FLOOR_DB
    return {
        "duration_s": duration,
        "expected_s": float(text_est_seconds),
        "duration_ratio": duration / text_est_seconds,
        "longest_silence_s": _longest_silence(audio, sr),
        "clipped_fraction": float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if len(audio) else 0.0,
        "rms_db": max(rms_db, RMS_FLOOR_DB),
    }


def check_gates(measures: dict[str, float], limits: GateLimits | None = None) -> list[str]:
    """Names of the gates `measures` fail; an empty list means the chunk passes.

    A NaN measure fails its gate: a number we could not compute is no evidence of quality.
    """
    limits = GateLimits() if limits is None else limits
    missing = [k for k in MEASURE_KEYS if k not in measures]
    if missing:
        raise ValueError(f"measures lack {missing}; measure_chunk gives {list(MEASURE_KEYS)}")
    checks = [
        ("duration_ratio_low", measures["duration_ratio"] >= limits.min_duration_ratio),
        ("duration_ratio_high", measures["duration_ratio"] <= limits.max_duration_ratio),
        ("longest_silence", measures["longest_silence_s"] <= limits.max_silence_s),
        ("clipped_fraction", measures["clipped_fraction"] <= limits.max_clipped_fraction),
        ("rms_low", measures["rms_db"] >= limits.min_rms_db),
        ("rms_high", measures["rms_db"] <= limits.max_rms_db),
    ]
    # `not passed` rather than `failed` comparisons, so NaN (all comparisons False) fails.
    return [name for name, passed in checks if not passed]


def _longest_silence(audio: np.ndarray, sr: int) -> float:
    """Longest run of silent frames, seconds; leading and trailing silence count too."""
    frame = max(1, int(round(SILENCE_FRAME_S * sr)))
    n_frames = len(audio) // frame
    if n_frames == 0:
        return 0.0
    frames = audio[: n_frames * frame].astype(np.float64).reshape(n_frames, frame)
    silent = np.sqrt(np.mean(frames**2, axis=1)) < 10 ** (SILENCE_DB / 20)
    longest = run = 0
    for is_silent in silent:
        run = run + 1 if is_silent else 0
        longest = max(longest, run)
    return longest * frame / sr
