"""Streaming: audio chunk by chunk as results finish, or piece by piece within one utterance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

from bark_model.coarse import CoarseRow, check_prompt_ratio, flatten_coarse, generate_coarse, trim_history
from bark_model.constants import (
    COARSE_RATE_HZ,
    COARSE_WINDOW,
    N_FINE_CODEBOOKS,
    SAMPLES_PER_FRAME,
    SEMANTIC_TO_COARSE_RATIO,
)
from bark_model.fine import FineRow, generate_fine
from bark_model.request import GenerationRequest, GenerationResult
from bark_model.sampling import RowSampling
from bark_model.semantic import SemanticRow, generate_semantic, max_tokens_for_duration

DEFAULT_FRAMES_PER_PIECE = COARSE_RATE_HZ  # 1 s of audio per piece: 2-3 coarse windows of 30 frames


def stream_chunks(engine, requests: Iterable[GenerationRequest], batch_size: int = 1) -> Iterator[GenerationResult]:
    """Each request's result as soon as its batch is done, in request order.

    batch_size 1 gives the lowest time to first audio; larger batches trade latency for
    throughput and yield a batch's results together. `requests` is read lazily, one batch at
    a time, so a bad request raises when its batch comes up, after earlier results were yielded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    requests = iter(requests)
    while batch := list(islice(requests, batch_size)):
        yield from engine.generate(batch, batch_size=batch_size)


@dataclass(frozen=True)
class _WindowRow(CoarseRow):
    """A CoarseRow that stops after `steps` tokens instead of at the end of its semantic tokens.

    generate_coarse reads a row's length only through `n_steps`, so one call with this row
    runs exactly one window of the full loop: the history carries everything generated
    before, and `semantic` keeps all the tokens still to come, so the window sees the same
    semantic context (including the look-ahead) as inside one long call.
    """

    steps: int = COARSE_WINDOW

    @property
    def n_steps(self) -> int:
        return self.steps


def stream_windows(engine, request: GenerationRequest,
                   frames_per_piece: int = DEFAULT_FRAMES_PER_PIECE) -> Iterator[np.ndarray]:  # fmt: skip
    """Audio of one utterance in pieces, float32 [N_i] at 24 kHz, each ready after its coarse windows.

    How: the semantic stage runs whole (its tokens are needed as look-ahead by every coarse
    window). The coarse stage then runs one 60-token (30-frame) window per `generate_coarse`
    call, the window's history being everything generated so far; with greedy coarse
    sampling those codes equal `engine.generate`'s exactly. Once `frames_per_piece` new frames
    exist, the fine stage fills them in, with the fine codes already emitted (after the voice's
    fine prompt) as its history, and the audio for them is decoded.

    Quality trade-off: in `engine.generate` the fine model sees a 1024-frame window with future
    context; here it sees only the frames that exist, so fine codes (and thus the audio) differ
    slightly from the non-streamed output, most near the end of each piece. Smaller pieces mean
    earlier audio but less fine context and more fine passes (one 1024-frame pass per piece).
    With temperature > 0 the coarse draws use other noise than `generate` (the noise is keyed
    by step within a call), so it is a different take of the same distribution.

    Decoding: the codec's LSTM state is not carried between calls, so each piece re-decodes all
    fine codes emitted so far from the start and yields only the new samples. The codec is
    causal, so the concatenated pieces equal one decode of all the streamed codes, with no
    seam; the cost grows with the square of the pieces, which a chunk of <= 14 s keeps small.
    """
    if frames_per_piece < 1:
        raise ValueError(f"frames_per_piece must be >= 1, got {frames_per_piece!r}")
    for _coarse, _fine, audio in _stream_codes(engine, request, frames_per_piece):
        yield audio


def _stream_codes(engine, request: GenerationRequest, frames_per_piece: int):
    """(coarse [2, n], fine [8, n], audio [320 n]) per piece: the codes behind stream_windows."""
    voice = engine.load_voice(request.voice)
    if voice is not None:
        check_prompt_ratio(voice.semantic, voice.coarse, voice.name)
    encoded = engine.tokenizer.encode(request.text)

    def sampling(stage):
        return RowSampling.build([getattr(request, stage)], [request.seed], engine.device)

    sem_row = SemanticRow(encoded.ids, None if voice is None else voice.semantic, request.min_eos_p,
                          max_tokens_for_duration(request.max_duration_s), request.allow_early_stop)  # fmt: skip
    semantic = generate_semantic(engine.text_model, [sem_row], sampling("semantic"))[0]
    if len(semantic) == 0:
        raise ValueError(f"the model produced no speech for {request.text[:60]!r} (EOS at the first step)")
    if voice is not None:
        sem_hist, coarse_hist = trim_history(voice.semantic, voice.coarse)
    else:
        sem_hist, coarse_hist = np.zeros(0, np.int64), np.zeros(0, np.int64)
    total = CoarseRow(sem_hist, coarse_hist, semantic).n_steps
    coarse_sampling, fine_sampling = sampling("coarse"), sampling("fine")

    coarse_flat = coarse_hist  # history + generated coarse tokens, flattened and offset
    fine_done = np.zeros((N_FINE_CODEBOOKS, 0), np.int64) if voice is None else voice.fine  # fine history + emitted
    pending = []  # coarse [2, 30] windows not yet turned into audio
    n_emitted = 0  # frames already yielded
    for window_start in range(0, total, COARSE_WINDOW):
        # The full loop's window input: semantic index round(step / ratio) past the history.
        consumed = int(round(window_start / SEMANTIC_TO_COARSE_RATIO))
        row = _WindowRow(np.concatenate([sem_hist, semantic[:consumed]]), coarse_flat, semantic[consumed:],
                         steps=min(COARSE_WINDOW, total - window_start))  # fmt: skip
        codes = generate_coarse(engine.coarse_model, [row], coarse_sampling)[0]  # [2, 30]
        coarse_flat = np.concatenate([coarse_flat, flatten_coarse(codes)])
        pending.append(codes)
        if sum(c.shape[1] for c in pending) < frames_per_piece and window_start + COARSE_WINDOW < total:
            continue
        coarse = np.concatenate(pending, axis=1)
        pending = []
        history = fine_done if fine_done.shape[1] else None
        fine = generate_fine(engine.fine_model, [FineRow(coarse, history)], fine_sampling)[0]
        fine_done = np.concatenate([fine_done, fine], axis=1)
        n_frames = n_emitted + coarse.shape[1]
        audio = engine.decode([fine_done[:, fine_done.shape[1] - n_frames :]])[0]
        yield coarse, fine, audio[n_emitted * SAMPLES_PER_FRAME :]
        n_emitted = n_frames
