"""Several voices in one text: `[voice: NAME]` tags and `NAME:` speaker lines become voice segments.

Rules (docs/AUDIOBOOK.md, "Several voices"):
* `[voice: X]` switches the voice from there on; X is a name of `generation.speakers`, else a
  voice spec as the `voice` column takes (preset name or .npz file); `[voice: default]` goes back
  to the row's voice.
* A line starting `NAME:` where NAME is a `generation.speakers` name (any case) is spoken by that
  speaker until the next speaker line, the next tag or the end of its paragraph (a blank line);
  then the voice of the last tag (or the row's voice) resumes. `NAME:` itself is not spoken.
* Segments are cut before chunking, so no chunk ever spans two voices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from pipeline.text.normalize import normalize_text
from pipeline.text.segment import split_into_chunks
from pipeline.text.ssml import apply_emphasis

# `[voice: v2/en_speaker_6]`, `[Voice:alice]`; the name is anything but brackets and newlines.
VOICE_TAG = re.compile(r"\[\s*voice\s*:\s*([^\[\]\n]*?)\s*\]", re.IGNORECASE)
# A speaker name as written at a line start: letters, digits, spaces, _ . ' - ; up to 40 characters.
SPEAKER_NAME = re.compile(r"^[^\W\d_][\w .'\-]{0,39}$")
_SPEAKER_LINE = re.compile(r"^[^\S\n]*([^\W\d_][\w .'\-]{0,39}?)[^\S\n]*:[^\S\n]*", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
DEFAULT_NAME = "default"  # `[voice: default]`: back to the row's own voice


@dataclass(frozen=True)
class VoiceSegment:
    """A stretch of raw text spoken in one voice (None: no voice prompt); it ends a paragraph or not."""

    voice: str | None
    text: str
    paragraph_break_after: bool
    language: str | None = None  # SSML <lang>; None: the row's
    pause_after_s: float | None = None  # SSML <break>: exact silence after it; None: the usual pause


@dataclass(frozen=True)
class VoicedChunk:
    """A chunk as pipeline.text.segment makes it, with the voice that speaks it."""

    text: str
    index: int
    paragraph_break_after: bool
    est_seconds: float
    voice: str | None
    pause_after_s: float | None = None  # exact silence after this chunk (SSML <break>); None: the usual pause


def check_speakers(speakers: dict[str, str], resolve: Callable[[str], object] | None = None) -> None:
    """ValueError naming the first bad `generation.speakers` entry; `resolve` checks a voice spec
    (e.g. pipeline.manifest.voices.resolve_voice_spec with voice_dirs) and raises on a bad one."""
    seen: dict[str, str] = {}
    for name, voice in speakers.items():
        key = name.strip().casefold() if isinstance(name, str) else None
        if key is None or not SPEAKER_NAME.match(name.strip()):
            raise ValueError(
                f"generation.speakers: {name!r} is not a speaker name (letters, digits, spaces, "
                "_ . ' -, starting with a letter, at most 40 characters)"
            )
        if key == DEFAULT_NAME:
            raise ValueError(f"generation.speakers: {name!r} is reserved ([voice: default] means the row's voice)")
        if key in seen:
            raise ValueError(f"generation.speakers: {name!r} and {seen[key]!r} are the same name (case is ignored)")
        seen[key] = name
        if not isinstance(voice, str) or not voice.strip():
            raise ValueError(f"generation.speakers.{name}: {voice!r} is not a voice (a preset name or .npz file)")
        if resolve is not None:
            try:
                resolve(voice)
            except ValueError as exc:
                raise ValueError(f"generation.speakers.{name}: {exc}") from None


def tag_voice_specs(text: str, speakers: dict[str, str] | None = None) -> list[str]:
    """The names of a text's `[voice: X]` tags that are neither a `generation.speakers` name nor
    `default`, in order and once each: voice specs the row's run must resolve ("" for an empty tag)."""
    names = {k.strip().casefold() for k in (speakers or {})} | {DEFAULT_NAME}
    specs = [m[1].strip() for m in VOICE_TAG.finditer(text) if m[1].strip().casefold() not in names]
    return list(dict.fromkeys(specs))


def split_voiced(
    text: str,
    default_voice: str | None,
    speakers: dict[str, str] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> list[VoiceSegment]:
    """Cut raw (not yet normalised) `text` into voice segments, in order; empty ones are dropped.

    `resolve` maps a voice spec written in a tag to what the engine takes and raises ValueError
    for a bad one (the row becomes an error row with that sentence); None keeps specs as written.
    Voices of `speakers` come from the config and are used as they are (`check_speakers` checks them).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    names = {k.strip().casefold(): v for k, v in (speakers or {}).items()}
    return _merge(_split(text, default_voice, default_voice, names, resolve or (lambda spec: spec)))


def split_ssml_voiced(
    segments: list,
    default_voice: str | None,
    speakers: dict[str, str] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> list[VoiceSegment]:
    """Voice segments of parsed SSML (pipeline.text.ssml.SsmlSegment list): `<voice name="X">` maps to a
    voice exactly as `[voice: X]` does, and tags and speaker lines inside the text still work."""
    names = {k.strip().casefold(): v for k, v in (speakers or {}).items()}
    resolve = resolve or (lambda spec: spec)
    out: list[VoiceSegment] = []
    for seg in segments:
        start = default_voice
        if seg.voice is not None:
            start = _tag_voice(seg.voice, names, default_voice, resolve, f'<voice name="{seg.voice.strip()}">')
        pieces = _split(seg.text, start, default_voice, names, resolve)
        if not pieces:
            continue
        pieces = [VoiceSegment(p.voice, p.text, p.paragraph_break_after, seg.language) for p in pieces]
        last = pieces[-1]
        pieces[-1] = VoiceSegment(last.voice, last.text, last.paragraph_break_after or seg.paragraph_break_after,
                                  seg.language, seg.pause_after_s)  # fmt: skip
        out.extend(pieces)
    return _merge(out)


def _split(text: str, start_voice, default_voice, names: dict, resolve) -> list[VoiceSegment]:
    """split_voiced's pieces before merging; the text starts in `start_voice` (an SSML <voice>)."""
    segments: list[VoiceSegment] = []
    current = start_voice  # set by tags; speaker lines override it within their paragraph

    def emit(voice, piece: str, brk: bool) -> None:
        if piece.strip():
            segments.append(VoiceSegment(voice, piece, brk))
        elif brk and segments:  # whitespace-only piece after a segment: its break still counts
            last = segments[-1]
            segments[-1] = VoiceSegment(last.voice, last.text, True)

    pos = 0
    for paragraph_end, next_start in _paragraph_bounds(text):
        paragraph = text[pos:paragraph_end]
        for voice, piece, last in _paragraph_pieces(paragraph, current, names, default_voice, resolve):
            if voice is _TAG:
                current = piece
                continue
            emit(voice, piece, last and next_start < len(text))
        pos = next_start
    return segments


_TAG = object()  # marks a tag's new voice among a paragraph's pieces


def _paragraph_bounds(text: str):
    """(end of paragraph, start of the next) for each paragraph; the last ends at len(text)."""
    for m in _PARAGRAPH_BREAK.finditer(text):
        yield m.start(), m.end()
    yield len(text), len(text)


def _paragraph_pieces(paragraph: str, current, names: dict, default_voice, resolve):
    """(voice, text, ends the paragraph) pieces of one paragraph, and (_TAG, new voice, False) at tags."""
    events = []  # (start, end, kind, value): speaker lines and tags, in order
    for m in _SPEAKER_LINE.finditer(paragraph):
        key = m[1].strip().casefold()
        if key in names:
            events.append((m.start(), m.end(), "speaker", names[key]))
    for m in VOICE_TAG.finditer(paragraph):
        events.append((m.start(), m.end(), "tag", m[1]))
    events.sort(key=lambda e: e[0])
    speaking = None  # voice of the speaker line in force, if any
    pieces, pos = [], 0
    for start, end, kind, value in events:
        if start < pos:
            continue  # a tag inside a speaker prefix "[voice: x]:" counts once
        pieces.append([speaking or current, paragraph[pos:start]])
        if kind == "speaker":
            speaking = value  # config, checked by `validate` (check_speakers); only row text is resolved
        else:
            current = _tag_voice(value, names, default_voice, resolve)
            speaking = None
            pieces.append([_TAG, current])
        pos = end
    pieces.append([speaking or current, paragraph[pos:]])
    last_text = max((i for i, p in enumerate(pieces) if p[0] is not _TAG), default=-1)
    return [(v, t, i == last_text) for i, (v, t) in enumerate(pieces)]


def _tag_voice(value: str, names: dict, default_voice, resolve, where: str | None = None):
    name = value.strip()
    if not name:
        raise ValueError("a [voice: ...] tag names no voice; write [voice: NAME] with a speaker, preset or .npz")
    if name.casefold() == DEFAULT_NAME:
        return default_voice
    if name.casefold() in names:
        return names[name.casefold()]
    return _resolve(name, resolve, where or f"[voice: {name}]")


def _resolve(spec: str, resolve, where: str) -> str:
    try:
        return resolve(spec)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _merge(segments: list[VoiceSegment]) -> list[VoiceSegment]:
    """Join neighbours in the same voice (a tag naming the voice in force changes nothing)."""
    out: list[VoiceSegment] = []
    for seg in segments:
        prev = out[-1] if out else None
        if prev and (prev.voice, prev.language, prev.pause_after_s) == (seg.voice, seg.language, None):
            sep = "\n\n" if prev.paragraph_break_after else " "
            text = prev.text.rstrip() + sep + seg.text.lstrip()
            out[-1] = VoiceSegment(seg.voice, text, seg.paragraph_break_after, seg.language, seg.pause_after_s)
        else:
            out.append(seg)
    return out


def split_voiced_chunks(
    text: str,
    default_voice: str | None,
    speakers: dict[str, str] | None = None,
    *,
    language: str = "en",
    resolve: Callable[[str], str] | None = None,
    lexicon=None,
    **split_options,
) -> list[VoicedChunk]:
    """Voice segments, each normalised and split by pipeline.text.segment.split_into_chunks,
    numbered across the row. `split_options`: count_tokens, max_tokens, target_seconds, max_seconds."""
    segments = split_voiced(text, default_voice, speakers, resolve)
    return chunk_segments(segments, language=language, lexicon=lexicon, **split_options)


def chunk_segments(segments: list[VoiceSegment], *, language: str = "en", lexicon=None,
                   **split_options) -> list[VoicedChunk]:  # fmt: skip
    """Chunks of voice segments, numbered across them: each segment is normalised in its language,
    respelled by `lexicon` (a pipeline.text.lexicon.Lexicon), emphasis put in capitals, then split."""
    out: list[VoicedChunk] = []
    for n, seg in enumerate(segments):
        lang = seg.language or language
        normal = normalize_text(seg.text, lang)
        if lexicon is not None:
            normal = lexicon.apply(normal, lang)
        chunks = split_into_chunks(apply_emphasis(normal), language=lang, **split_options)
        if not chunks:
            if seg.pause_after_s is not None and out:  # nothing to say, but its break still follows the text before
                out[-1] = replace(out[-1], pause_after_s=(out[-1].pause_after_s or 0.0) + seg.pause_after_s)
            continue
        for k, c in enumerate(chunks):
            last = k == len(chunks) - 1
            brk = c.paragraph_break_after or (last and seg.paragraph_break_after and n < len(segments) - 1)
            pause = seg.pause_after_s if last else None
            out.append(VoicedChunk(c.text, len(out), brk, c.est_seconds, seg.voice, pause))
    return out
