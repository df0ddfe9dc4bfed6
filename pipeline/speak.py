"""The one text path: normalise -> chunk -> generate -> trim, join, loudness; `say`, `run` and `--dry-run` share it.

`segment` below is any object with SegmentConfig's fields (the config section itself, or the
synthesize stage's flat StageSettings, which uses the same names), so the same settings give
the same audio from `barkpipe say` and from a `barkpipe run` row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# No torch at import: --dry-run plans with split_text and text_token_counter without loading it.


class TextError(ValueError):
    """A text that cannot be spoken; `stage` names the step for a run's errors/ ("validate" or "segment")."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


@dataclass
class SpokenText:
    audio: np.ndarray  # float32, joined
    sample_rate: int
    results: list  # one GenerationResult per chunk, in order
    chunks: list  # the segment.Chunk each result spoke

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


def default_segment():
    """SegmentConfig's defaults: what a run without a `segment:` section uses."""
    from pipeline.config import SegmentConfig

    return SegmentConfig()


def split_text(text: str, segment=None, *, language: str | None = None,
               count_tokens: Callable[[str], int] | None = None, lexicon=None) -> list:  # fmt: skip
    """Normalise, respell (lexicon) and chunk a text; TextError (with the failing stage) when nothing can be spoken.

    count_tokens: the engine's tokenizer count (exact); None uses the segmenter's estimate.
    lexicon: a pipeline.text.lexicon.Lexicon applied after normalisation; None: none.
    """
    from pipeline.text.normalize import normalize_text
    from pipeline.text.segment import split_into_chunks

    segment = segment or default_segment()
    language = language or segment.language
    try:
        normal = normalize_text(text, language)
    except ValueError as exc:
        raise TextError(f"text cannot be prepared for language {language!r}: {exc}", "validate") from None
    if lexicon is not None:
        normal = lexicon.apply(normal, language)
    try:
        chunks = split_into_chunks(normal, language=language, count_tokens=count_tokens, max_tokens=segment.max_tokens,
                                   target_seconds=segment.target_seconds, max_seconds=segment.max_seconds)  # fmt: skip
    except ValueError as exc:
        raise TextError(f"text cannot be split into chunks: {exc}", "segment") from None
    if not chunks:
        raise TextError("text is empty (after normalisation there is nothing to say)", "segment")
    return chunks


def plan_text(text: str, segment=None, *, language: str | None = None, text_format: str = "plain",
              voice: str | None = None, speakers: dict[str, str] | None = None,
              resolve: Callable[[str], str] | None = None, lexicon=None,
              count_tokens: Callable[[str], int] | None = None) -> tuple[list, list[str]]:  # fmt: skip
    """(chunks, notes) of one text as `run` plans a row and `say` a text; TextError names the failing stage.

    text_format "ssml" reads the text as SSML (pipeline/text/ssml.py); a plain text with `[voice: X]`
    tags or `speakers` lines is cut into voice segments (pipeline/text/voices.py); else split_text.
    Chunks carry `voice` and `pause_after_s` where the text sets them. notes: SSML tags not honoured.
    """
    from pipeline.text.ssml import SsmlError, parse_ssml
    from pipeline.text.voices import VOICE_TAG, chunk_segments, split_ssml_voiced, split_voiced

    if text_format not in ("plain", "ssml"):
        raise TextError(f"text_format must be plain or ssml, got {text_format!r}", "validate")
    segment = segment or default_segment()
    language = language or segment.language
    notes: list[str] = []
    if text_format == "plain" and not (VOICE_TAG.search(text) or (speakers and ":" in text)):
        return split_text(text, segment, language=language, count_tokens=count_tokens, lexicon=lexicon), notes
    try:
        if text_format == "ssml":
            parsed = parse_ssml(text, language)
            notes = parsed.notes
            segments = split_ssml_voiced(parsed.segments, voice, speakers, resolve)
        else:
            segments = split_voiced(text, voice, speakers, resolve)
    except SsmlError as exc:
        raise TextError(str(exc), "validate") from None
    except ValueError as exc:  # an unknown speaker or voice, or a voice outside generation.voice_dirs
        raise TextError(str(exc), "voice") from None
    try:
        chunks = chunk_segments(segments, language=language, lexicon=lexicon, count_tokens=count_tokens,
                                max_tokens=segment.max_tokens, target_seconds=segment.target_seconds,
                                max_seconds=segment.max_seconds)  # fmt: skip
    except ValueError as exc:
        raise TextError(f"text cannot be split into chunks: {exc}", "segment") from None
    if not chunks:
        raise TextError("text is empty (after normalisation there is nothing to say)", "segment")
    return chunks, notes


def join_audio(pieces: list[np.ndarray], sample_rate: int, breaks: list[bool], segment=None,
               lap: Callable[[str], None] | None = None,
               pauses: list[float | None] | None = None) -> np.ndarray:  # fmt: skip
    """Chunk audio -> one track: trim each chunk, join with pauses and crossfades, then set the loudness.

    breaks[i]: chunk i ends a paragraph (the longer pause follows). pauses[i]: exact seconds of
    silence after chunk i (an SSML <break>), None for the usual pause. lap(step) is called after
    "trim", "join" and "loudness", for callers that time the steps.
    """
    from pipeline.audio.assemble import join_chunks, normalize_loudness, trim_silence

    segment = segment or default_segment()
    lap = lap or (lambda step: None)
    if segment.trim_silence:
        pieces = [trim_silence(p, sample_rate) for p in pieces]
    lap("trim")
    audio = join_chunks(pieces, sample_rate, pause_s=segment.sentence_pause_s,
                        paragraph_pause_s=segment.paragraph_pause_s, paragraph_breaks=list(breaks),
                        crossfade_ms=segment.crossfade_ms, pauses_after=pauses)  # fmt: skip
    lap("join")
    if len(audio) == 0:
        raise ValueError("every chunk came out silent; try another seed or voice")
    if segment.loudness_lufs is not None:
        audio, _ = normalize_loudness(audio, sample_rate, segment.loudness_lufs)
        lap("loudness")
    return audio.astype(np.float32)


def text_token_counter(weights_dir: str | Path) -> Callable[[str], int] | None:
    """The engine's exact token count from a weights folder's vocabulary, without loading torch (for --dry-run).

    Built as bark_model.tokenizer.BarkTokenizer builds it (a test compares the two); None when
    the folder has no tokenizer file (the segmenter's estimate is used then).
    """
    root = Path(weights_dir)
    for name in ("tokenizer.json", "vocab.txt"):
        if (root / name).is_file():
            return _counter(root / name)
    return None


def _counter(path: Path) -> Callable[[str], int]:
    """Token counts with the vocabulary at `path`; ValueError naming the file when it is empty or unusable."""
    import re

    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    tok: Tokenizer | BertWordPieceTokenizer  # both encode(text, add_special_tokens=...)
    space = re.compile(r"\s+")
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        if path.suffix == ".json":
            tok = Tokenizer.from_file(str(path))
        else:
            tok = BertWordPieceTokenizer(str(path), clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                         lowercase=False)  # fmt: skip
        tok.encode("Hello, world.", add_special_tokens=False)  # as BarkTokenizer.from_file probes it
    except Exception as exc:  # the Rust `tokenizers` library raises bare Exception for every parse error
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"tokenizer file {path} cannot be used ({first}); it is damaged: download the weights "
                         "again") from None  # fmt: skip
    return lambda text: len(tok.encode(space.sub(" ", text).strip(), add_special_tokens=False).ids)


def chunk_requests(engine, text: str, *, voice=None, seed: int = 0, text_temp: float = 0.7, waveform_temp: float = 0.7,
                   max_duration: float | None = None, language: str | None = None, segment=None,
                   text_format: str = "plain", lexicon=None):  # fmt: skip
    """(chunks, requests) for a text; chunk k's seed is derived from `seed` as in `barkpipe run`.

    A chunk an SSML <voice> or a `[voice: X]` tag gives another voice is asked in that voice spec."""
    from bark_model import GenerationRequest
    from pipeline.batch.stages.prepare import chunk_seed  # the run's seeds, so a one-chunk row matches `say --seed`

    chunks, _ = plan_text(text, segment, language=language, text_format=text_format, voice=voice,
                          lexicon=lexicon, count_tokens=engine.count_text_tokens)  # fmt: skip
    requests = [
        GenerationRequest.simple(
            c.text,
            voice=getattr(c, "voice", voice),
            seed=chunk_seed(seed, c.index),
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
    from bark_model.streaming import stream_chunks
    from pipeline.audio.assemble import join_chunks, trim_silence

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
