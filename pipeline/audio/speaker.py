"""Speaker consistency: embed a chunk's voice and compare it with the row's reference voice (cosine)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.audio.speech import to_asr_rate
from pipeline.extras import require

BACKENDS = ("resemblyzer",)
# Shorter audio carries too little voice for an embedding (Resemblyzer's partial window is 1.6 s;
# it pads shorter input, and below ~0.3 s the padding is what gets embedded).
MIN_SECONDS = 0.3
GATE_NAME = "speaker_similarity"


@runtime_checkable
class SpeakerEncoder(Protocol):
    """A speaker-embedding model loaded once per actor: mono float audio [N] -> an L2-normalised vector [D]."""

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray: ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (NaN when either is all zeros: no evidence of a voice)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in size: {a.shape[0]} vs {b.shape[0]}")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm > 0 else float("nan")


def speaker_gate(similarity: float, min_similarity: float) -> list[str]:
    """[GATE_NAME] when the chunk's voice is too far from the reference (NaN fails too), else []."""
    return [] if similarity >= min_similarity else [GATE_NAME]


def make_encoder(backend: str = "resemblyzer", device: str = "cpu") -> SpeakerEncoder:
    """Load the named encoder once; call this in an actor's __init__, not per chunk."""
    if backend == "resemblyzer":
        return ResemblyzerEncoder(device)
    raise ValueError(f"quality.speaker.backend {backend!r} is not known; use one of {list(BACKENDS)}")


class ResemblyzerEncoder:
    """Resemblyzer's GE2E voice encoder (pipeline.audio.voice_encoder); its weights ship inside barkpipe.

    Its own preprocessing is used: resample to 16 kHz, volume normalisation and webrtcvad
    trimming of long silences, so pauses between sentences do not dilute the voice.
    """

    def __init__(self, device: str = "cpu"):
        require("quality.speaker")  # webrtcvad: one line naming the install command, before any loading
        # The encoder is a torch network (~1.5 s to import torch): loaded only when the speaker check is on.
        from pipeline.audio.voice_encoder import VoiceEncoder

        self.encoder = VoiceEncoder(device)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        from pipeline.audio.voice_encoder import EMBEDDING, SAMPLE_RATE, preprocess_wav  # torch: as in __init__

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono of shape [N], got shape {audio.shape}")
        audio = np.clip(np.nan_to_num(audio, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        if len(audio) < MIN_SECONDS * sr or not np.any(audio):
            return np.zeros(EMBEDDING, np.float32)
        wav = preprocess_wav(to_asr_rate(audio, sr))  # 16 kHz, Resemblyzer's rate too
        if len(wav) < MIN_SECONDS * SAMPLE_RATE:  # the VAD found (almost) no voice
            return np.zeros(EMBEDDING, np.float32)
        return self.encoder.embed_utterance(wav)
