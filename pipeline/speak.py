"""`barkpipe say`'s driver: plan each text's chunks (pipeline.text.chunks), speak them with bark_model in
shared batches, and join each text's audio (pipeline.audio.assemble) as a run's finish stage joins a row.

`segment` below is any object with SegmentConfig's fields; None uses SegmentConfig's defaults, as a
run without a `segment:` section does, so `say` and a `run` row give the same audio.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bark_model import GenerationRequest
from bark_model.streaming import stream_chunks
from pipeline.audio.assemble import join_audio, join_chunks, trim_silence
from pipeline.config import DEFAULT_TEMPERATURE
from pipeline.text.chunks import chunk_seed, default_segment, plan_text


@dataclass
class SpokenText:
    audio: np.ndarray  # float32, joined
    sample_rate: int
    results: list  # one GenerationResult per chunk, in order
    chunks: list  # the segment.Chunk each result spoke

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


def chunk_requests(engine, text: str, *, voice=None, seed: int = 0, text_temp: float = DEFAULT_TEMPERATURE,
                   waveform_temp: float = DEFAULT_TEMPERATURE, max_duration: float | None = None,
                   language: str | None = None, segment=None, text_format: str = "plain", lexicon=None):  # fmt: skip
    """(chunks, requests) for a text; chunk k's seed is derived from `seed` as in `barkpipe run`.

    A chunk an SSML <voice> or a `[voice: X]` tag gives another voice is asked in that voice spec."""
    chunks, _ = plan_text(text, segment, language=language, text_format=text_format, voice=voice,
                          lexicon=lexicon, count_tokens=engine.count_text_tokens)  # fmt: skip
    requests = [
        GenerationRequest.simple(
            c.text,
            voice=getattr(c, "voice", voice),
            seed=chunk_seed(seed, c.index),  # the run's seeds, so a one-chunk row matches `say --seed`
            text_temp=text_temp,
            waveform_temp=waveform_temp,
            max_duration_s=max_duration,
        )
        for c in chunks
    ]
    return chunks, requests


def plan_many(engine, texts: list[str], **kwargs) -> list[tuple[list, list]]:
    """(chunks, requests) per text: everything before generation, so callers can check the plan first."""
    return [chunk_requests(engine, text, **kwargs) for text in texts]


def speak_planned(engine, planned: list[tuple[list, list]], *, batch_size: int = 8, segment=None,
                  progress=None) -> list[SpokenText]:  # fmt: skip
    """Every chunk of every text goes through the engine in shared batches; then each text is joined."""
    segment = segment or default_segment()
    flat = [request for _, requests in planned for request in requests]
    results = engine.generate(flat, batch_size=batch_size, progress=progress)
    spoken, start = [], 0
    for chunks, requests in planned:
        mine = results[start : start + len(requests)]
        start += len(requests)
        sr = mine[0].sample_rate
        breaks = [c.paragraph_break_after for c in chunks]
        pauses = [getattr(c, "pause_after_s", None) for c in chunks]  # None for --no-split's [None] too
        audio = join_audio([r.audio for r in mine], sr, breaks, segment, pauses=pauses)
        spoken.append(SpokenText(audio, sr, mine, chunks))
    return spoken


def speak_many(
    engine, texts: list[str], *, batch_size: int = 8, segment=None, progress=None, **kwargs
) -> list[SpokenText]:
    return speak_planned(engine, plan_many(engine, texts, segment=segment, **kwargs), batch_size=batch_size,
                         segment=segment, progress=progress)  # fmt: skip


def speak(engine, text: str, **kwargs) -> SpokenText:
    return speak_many(engine, [text], **kwargs)[0]


def stream_speech(engine, text: str, *, batch_size: int = 1, segment=None, **kwargs) -> Iterator[np.ndarray]:
    """`speak`'s audio in pieces, one per chunk as soon as it is generated (float32, 24 kHz).

    The pieces concatenate to `speak(...).audio` when segment.loudness_lufs is None (loudness
    needs the whole track, so a stream cannot apply it): each chunk is trimmed and joined with
    the same pauses, but the last crossfade's worth of samples is held back until the next chunk
    arrives, because joining fades them out. (Exact up to samples clipped at full scale in a fade.)
    """
    segment = segment or default_segment()
    chunks, requests = chunk_requests(engine, text, segment=segment, **kwargs)
    fade_ms = segment.crossfade_ms
    held = None  # joined audio not yet yielded: the tail that the next join may fade
    for k, result in enumerate(stream_chunks(engine, requests, batch_size=batch_size)):
        sr = result.sample_rate
        piece = trim_silence(result.audio, sr) if segment.trim_silence else result.audio
        if held is None:
            joined = join_chunks([piece], sr, crossfade_ms=fade_ms)
        else:
            joined = join_chunks([held, piece], sr, pause_s=segment.sentence_pause_s,
                                 paragraph_pause_s=segment.paragraph_pause_s,
                                 paragraph_breaks=[chunks[k - 1].paragraph_break_after, False],
                                 crossfade_ms=fade_ms,
                                 pauses_after=[getattr(chunks[k - 1], "pause_after_s", None), None])  # fmt: skip
        keep = 0 if k == len(chunks) - 1 else min(len(joined), int(round(fade_ms / 1000 * sr)))
        held = joined[len(joined) - keep :]
        yield joined[: len(joined) - keep].astype(np.float32)
