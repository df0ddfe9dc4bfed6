"""What one row asks the engine for, and what it gets back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bark_model.constants import (
    DEFAULT_FINE_TEMP,
    DEFAULT_MIN_EOS_P,
    DEFAULT_TEXT_TEMP,
    DEFAULT_WAVEFORM_TEMP,
    SAMPLE_RATE,
)


@dataclass(frozen=True)
class Sampling:
    """Sampling for one stage. temperature 0 means greedy (argmax); top_k/top_p None = off."""

    temperature: float = DEFAULT_TEXT_TEMP
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


@dataclass(frozen=True)
class GenerationRequest:
    """One utterance: text, voice, seed and per-stage sampling.

    `voice` is None (no prompt), a preset name such as "v2/en_speaker_6", a path to an
    .npz voice prompt, or a loaded `VoicePrompt`. The seed makes the row reproducible
    whatever batch it runs in.
    """

    text: str
    voice: object = None
    seed: int = 0
    semantic: Sampling = field(default_factory=lambda: Sampling(DEFAULT_TEXT_TEMP))
    coarse: Sampling = field(default_factory=lambda: Sampling(DEFAULT_WAVEFORM_TEMP))
    fine: Sampling = field(default_factory=lambda: Sampling(DEFAULT_FINE_TEMP))
    min_eos_p: float | None = DEFAULT_MIN_EOS_P
    max_duration_s: float | None = None
    allow_early_stop: bool = True  # False: never stop on EOS (fixed-length runs, benchmarks)

    def __post_init__(self):
        if not isinstance(self.text, str):
            raise ValueError(f"text must be a string, got {type(self.text).__name__}")
        if not self.text.strip():
            raise ValueError("text is empty (after whitespace is collapsed there is nothing to say)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.max_duration_s is not None and not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s must be > 0 or None, got {self.max_duration_s!r}")
        if self.min_eos_p is not None and not 0 < self.min_eos_p <= 1:
            raise ValueError(f"min_eos_p must be in (0, 1] or None, got {self.min_eos_p!r}")

    @classmethod
    def greedy(
        cls,
        text: str,
        voice: object = None,
        *,
        seed: int = 0,
        max_duration_s: float | None = None,
        min_eos_p: float | None = DEFAULT_MIN_EOS_P,
    ) -> GenerationRequest:
        """Deterministic decoding: argmax at all three stages, so the same text and voice give the same
        codes in any batch, on any run (reference comparisons, regression tests, reproducible takes)."""
        argmax = Sampling(temperature=0.0)
        return cls(text=text, voice=voice, seed=seed, semantic=argmax, coarse=argmax, fine=argmax,
                   min_eos_p=min_eos_p, max_duration_s=max_duration_s)  # fmt: skip

    @classmethod
    def simple(
        cls,
        text: str,
        voice: object = None,
        seed: int = 0,
        text_temp: float = DEFAULT_TEXT_TEMP,
        waveform_temp: float = DEFAULT_WAVEFORM_TEMP,
        fine_temp: float | None = None,
        max_duration_s: float | None = None,
    ) -> GenerationRequest:
        """The official API's knobs: text_temp (semantic), waveform_temp (coarse), fine 0.5.

        Temperature 0 anywhere means greedy there; with text_temp and waveform_temp both 0 the
        fine stage is greedy too, so `temperature=0` gives a fully deterministic row.
        """
        if fine_temp is None:
            fine_temp = 0.0 if (text_temp == 0 and waveform_temp == 0) else DEFAULT_FINE_TEMP
        return cls(
            text=text,
            voice=voice,
            seed=seed,
            semantic=Sampling(text_temp),
            coarse=Sampling(waveform_temp),
            fine=Sampling(fine_temp),
            max_duration_s=max_duration_s,
        )


@dataclass
class GenerationResult:
    """The audio and the three code arrays of one utterance (voice-prompt format)."""

    audio: np.ndarray  # [N] float32 at `sample_rate`, N = 320 * frames
    semantic: np.ndarray  # [S] int64, 0..9999
    coarse: np.ndarray  # [2, T] int64, 0..1023
    fine: np.ndarray  # [8, T] int64, 0..1023
    sample_rate: int = SAMPLE_RATE
    dropped_text_tokens: int = 0  # text tokens past 256 that the model never saw
    timings: dict = field(default_factory=dict)  # stage -> seconds, shared by the batch

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def save_codes(self, path: str | Path) -> None:
        """Write the codes as an .npz voice prompt that `voice=` accepts."""
        np.savez(
            path,
            semantic_prompt=self.semantic.astype(np.int64),
            coarse_prompt=self.coarse.astype(np.int64),
            fine_prompt=self.fine.astype(np.int64),
        )
