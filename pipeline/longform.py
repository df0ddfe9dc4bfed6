"""Speak one text of any length: normalise, split into Bark-sized chunks, generate, join."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from bark_model import GenerationRequest

CROSSFADE_MS = 10.0  # fade at each join so no click is heard (stream_speech holds this much back)


@dataclass
class SpokenText:
    audio: np.ndarray  # float32, joined
    sample_rate: int
    results: list  # one GenerationResult per chunk, in order
    chunks: list  # the segment.Chunk each result spoke

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


def chunk_requests(engine, text: str, *, voice=None, seed: int = 0, text_temp: float = 0.7,
                   waveform_temp: float = 0.7, max_duration: float | None = None, language: str = "en"):  # fmt: skip
    """(chunks, requests) for a text; chunk k's seed is derived from `seed` as in `barkpipe run`."""
    from pipeline.text.segment import split_into_chunks
    from pipeline.batch.synthesize import chunk_seed
    from pipeline.text.normalize import normalize_text

    chunks = split_into_chunks(normalize_text(text, language), language=language, count_tokens=engine.count_text_tokens)
    if not chunks:
        raise ValueError("text is empty (after normalisation there is nothing to say)")
    requests = [
        GenerationRequest.simple(c.text, voice=voice, seed=chunk_seed(seed, c.index), text_temp=text_temp,
                                 waveform_temp=waveform_temp, max_duration_s=max_duration)  # fmt: skip
        for c in chunks
    ]
    return chunks, requests


def speak_many(engine, texts: list[str], *, batch_size: int = 8, pause_s: float = 0.25,
               paragraph_pause_s: float = 0.7, progress=None, **kwargs) -> list[SpokenText]:  # fmt: skip
    """Every chunk of every text goes through the engine in shared batches; then each is joined."""
    planned = [chunk_requests(engine, text, **kwargs) for text in texts]
    flat = [request for _, requests in planned for request in requests]
    results = engine.generate(flat, batch_size=batch_size, progress=progress)
    spoken, start = [], 0
    for chunks, requests in planned:
        mine = results[start : start + len(requests)]
        start += len(requests)
        spoken.append(_join(chunks, mine, pause_s, paragraph_pause_s))
    return spoken


def speak(engine, text: str, **kwargs) -> SpokenText:
    return speak_many(engine, [text], **kwargs)[0]


def stream_speech(engine, text: str, *, batch_size: int = 1, pause_s: float = 0.25,
                  paragraph_pause_s: float = 0.7, **kwargs) -> Iterator[np.ndarray]:  # fmt: skip
    """`speak`'s audio in pieces, one per chunk as soon as it is generated (float32, 24 kHz).

    The pieces concatenate to `speak(...).audio`: each chunk is trimmed and joined with the same
    pauses, but the last crossfade's worth of samples is held back until the next chunk arrives,
    because joining fades them out. (Exact up to samples clipped at full scale inside a fade.)
    """
    from bark_model.streaming import stream_chunks
    from pipeline.audio.assemble import join_chunks, trim_silence

    chunks, requests = chunk_requests(engine, text, **kwargs)
    held = None  # joined audio not yet yielded: the tail that the next join may fade
    for k, result in enumerate(stream_chunks(engine, requests, batch_size=batch_size)):
        sr = result.sample_rate
        if len(chunks) == 1:
            yield result.audio.astype(np.float32)
            return
        piece = trim_silence(result.audio, sr)
        if held is None:
            joined = join_chunks([piece], sr, crossfade_ms=CROSSFADE_MS)
        else:
            joined = join_chunks([held, piece], sr, pause_s=pause_s, paragraph_pause_s=paragraph_pause_s,
                                 paragraph_breaks=[chunks[k - 1].paragraph_break_after, False], crossfade_ms=CROSSFADE_MS)  # fmt: skip
        keep = 0 if k == len(chunks) - 1 else min(len(joined), int(round(CROSSFADE_MS / 1000 * sr)))
        held = joined[len(joined) - keep :]
        yield joined[: len(joined) - keep]


def _join(chunks, results, pause_s, paragraph_pause_s) -> SpokenText:
    from pipeline.audio.assemble import join_chunks, trim_silence

    sr = results[0].sample_rate
    if len(results) == 1:
        audio = results[0].audio
    else:
        pieces = [trim_silence(r.audio, sr) for r in results]
        audio = join_chunks(pieces, sr, pause_s=pause_s, paragraph_pause_s=paragraph_pause_s,
                            paragraph_breaks=[c.paragraph_break_after for c in chunks], crossfade_ms=CROSSFADE_MS)  # fmt: skip
    return SpokenText(audio.astype(np.float32), sr, results, chunks)
