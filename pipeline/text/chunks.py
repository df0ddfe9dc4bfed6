"""A text's chunk plan for `say`, `run` and `--dry-run`: split (normalise, respell, chunk), chunk seeds, token counts.

`segment` below is any object with SegmentConfig's text fields (the config section itself, or the
engine stage's flat StageSettings, which uses the same names), so the same settings give the same
chunks from `barkpipe say` and from a `barkpipe run` row. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from bark_model.names import BUNDLED_VOCAB, HF_TOKENIZER_FILES
from pipeline.config import SegmentConfig
from pipeline.text.normalize import normalize_text
from pipeline.text.segment import split_into_chunks
from pipeline.text.ssml import TEXT_FORMATS, SsmlError, parse_ssml
from pipeline.text.voices import VOICE_TAG, chunk_segments, split_ssml_voiced, split_voiced

SEED_MODULUS = 2**31  # derived seeds fit any generator's 31-bit seed
_SPACE = re.compile(r"\s+")


class TextError(ValueError):
    """A text that cannot be spoken; `stage` names the step for a run's errors/ ("validate", "voice" or "segment")."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


def default_segment() -> SegmentConfig:
    """SegmentConfig's defaults: what a run without a `segment:` section, and `barkpipe say`, use."""
    return SegmentConfig()


def split_text(text: str, segment=None, *, language: str | None = None,
               count_tokens: Callable[[str], int] | None = None, lexicon=None) -> list:  # fmt: skip
    """Normalise, respell (lexicon) and chunk a text; TextError (with the failing stage) when nothing can be spoken.

    count_tokens: the engine's tokenizer count (exact); None uses the segmenter's estimate.
    lexicon: a pipeline.text.lexicon.Lexicon applied after normalisation; None: none.
    """
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
    if text_format not in TEXT_FORMATS:
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


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (same on every machine and Python run, unlike hash())."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SEED_MODULUS


def chunk_seed(row_seed: int, index: int, attempt: int = 0) -> int:
    """Chunk 0's first attempt uses the row seed itself, so a one-chunk row matches `barkpipe say --seed`."""
    return row_seed if index == 0 and attempt == 0 else derive_seed(row_seed, index, attempt)


def token_counter(weights: str | Path) -> Callable[[str], int]:
    """Bark's exact text-token count, without torch: the weights folder's own vocabulary when
    `weights` is a local folder that has one, else the mBERT vocabulary bundled in bark_model."""
    if Path(weights).is_dir():
        count = text_token_counter(weights)
        if count is not None:
            return count
    return vocab_counter(bundled_vocab())


def bundled_vocab() -> Path:
    """bark_model's own copy of the mBERT vocabulary (Bark's text tokenizer is cased multilingual BERT for
    every checkpoint), so a node without the weights counts tokens exactly as the engine does."""
    return Path(str(files("bark_model") / "assets" / BUNDLED_VOCAB))


def text_token_counter(weights_dir: str | Path) -> Callable[[str], int] | None:
    """The engine's exact token count from a weights folder's vocabulary, without loading torch (for --dry-run).

    Built as bark_model.tokenizer.BarkTokenizer builds it (a test compares the two); None when
    the folder has no tokenizer file (the segmenter's estimate is used then).
    """
    root = Path(weights_dir)
    for name in HF_TOKENIZER_FILES:  # a weights folder's own vocabulary (HF layout, then Suno layout)
        if (root / name).is_file():
            return vocab_counter(root / name)
    return None


def vocab_counter(path: Path) -> Callable[[str], int]:
    """Token counts with the vocabulary at `path`; ValueError naming the file when it is empty or unusable."""
    tok: Tokenizer | BertWordPieceTokenizer  # both encode(text, add_special_tokens=...)
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
    return lambda text: len(tok.encode(_SPACE.sub(" ", text).strip(), add_special_tokens=False).ids)
