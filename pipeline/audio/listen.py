"""The listening gates of one engine actor: speech check and speaker consistency, judged per chunk.

Built once per actor (`from_quality`), then `judge` per generated chunk and `accept` per chunk
that passed every gate; references are kept per (row id, voice), so each voice of a
multi-voice row is compared only with itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.audio.speaker import SpeakerEncoder, cosine, make_encoder, speaker_gate
from pipeline.audio.speech import Transcriber, make_transcriber, speech_gate, speech_measures


@dataclass
class Verdict:
    """What the listening gates add to a chunk: measures (floats), failed gate names, the transcript."""

    measures: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    transcript: str | None = None
    embedding: np.ndarray | None = None  # the chunk's voice; `accept` may make it the reference


@dataclass
class ListenChecks:
    transcriber: Transcriber | None = None
    max_wer: float = 0.5
    max_cer: float | None = None
    language: str = "en"
    encoder: SpeakerEncoder | None = None
    min_similarity: float = 0.75
    _references: dict[Hashable, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_quality(cls, quality: Any, device: str = "cpu") -> ListenChecks | None:
        """From a QualityConfig (its `speech` and `speaker` sections; None when both are off). Loads the models."""
        speech, speaker = getattr(quality, "speech", None), getattr(quality, "speaker", None)
        if speech is None and speaker is None:
            return None
        checks = cls()
        if speech is not None:
            checks.transcriber = make_transcriber(speech.backend, speech.model, speech.language, speech.device)
            checks.max_wer, checks.max_cer, checks.language = speech.max_wer, speech.max_cer, speech.language
        if speaker is not None:
            checks.encoder = make_encoder(speaker.backend, device)
            checks.min_similarity = speaker.min_similarity
        return checks

    def voice_of(self, audio: np.ndarray, sr: int) -> np.ndarray | None:
        """The speaker embedding of `audio` (None without a speaker check); lets a caller embed a
        voice prompt once and `use_reference` it for every row that speaks in it."""
        return None if self.encoder is None else self.encoder.embed(audio, sr)

    def use_reference(self, key: Hashable, embedding: np.ndarray | None) -> None:
        """Hold `key` to `embedding`; an all-zero one (no voice heard) is ignored, so the first
        accepted chunk becomes the reference instead of a reference every chunk fails."""
        if embedding is not None and np.any(embedding):
            self._references[key] = embedding

    def judge(self, audio: np.ndarray, sr: int, text: str, key: Hashable) -> Verdict:
        """Measure one chunk; `key` names its reference voice, e.g. (row id, voice spec)."""
        verdict = Verdict()
        if self.transcriber is not None:
            m = speech_measures(audio, sr, text, self.transcriber, self.language)
            verdict.transcript = m.pop("transcript")
            verdict.measures.update(m)
            verdict.failed += speech_gate(m, self.max_wer, self.max_cer)
        if self.encoder is not None:
            verdict.embedding = self.encoder.embed(audio, sr)
            reference = self._references.get(key)
            if reference is not None:  # none yet: the first accepted chunk of this voice sets it
                similarity = cosine(reference, verdict.embedding)
                verdict.measures["speaker_similarity"] = similarity
                verdict.failed += speaker_gate(similarity, self.min_similarity)
        return verdict

    def accept(self, key: Hashable, verdict: Verdict) -> None:
        """A chunk judged for `key` passed every gate; the first such chunk becomes the reference."""
        e = verdict.embedding
        if e is not None and key not in self._references and np.any(e):
            self._references[key] = e

    def forget(self, row_id: Any) -> None:
        """Drop a finished row's references (keys (row_id, ...) or row_id) to bound memory."""
        for key in [k for k in self._references if (k[0] if isinstance(k, tuple) else k) == row_id]:
            del self._references[key]
