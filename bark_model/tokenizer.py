"""Bark's text tokenizer: multilingual-cased BERT WordPiece, offset and padded to 256 slots."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bark_model.constants import MAX_TEXT_TOKENS, TEXT_ENCODING_OFFSET, TEXT_PAD_TOKEN

_WHITESPACE = re.compile(r"\s+")
PROBE_TEXT = "Hello, world."  # encoded once at load: a damaged vocabulary fails when the model loads
TOKENIZER_FIX = "it is damaged: download the weights again (or copy vocab.txt of bert-base-multilingual-cased)"


def normalize_whitespace(text: str) -> str:
    """Collapse every whitespace run to one space and strip the ends (as the official code)."""
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class EncodedText:
    ids: np.ndarray  # [256] int64, offset ids then TEXT_PAD_TOKEN
    n_tokens: int  # tokens the model sees (<= 256)
    n_dropped: int  # tokens cut off past 256


class BarkTokenizer:
    """mBERT (cased) WordPiece through the `tokenizers` library, no special tokens."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: str | Path) -> BarkTokenizer:
        """A `vocab.txt` (WordPiece vocabulary) or a `tokenizer.json`; ValueError naming the file if it is unusable."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"tokenizer file {path} is empty; {TOKENIZER_FIX}")
        try:
            tokenizer = cls(_build(path))
            tokenizer.token_ids(PROBE_TEXT)  # a vocabulary without [UNK] or word pieces fails here, not mid-run
        except Exception as exc:  # the Rust `tokenizers` library raises bare Exception for every parse error
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise ValueError(f"tokenizer file {path} cannot be used ({first}); {TOKENIZER_FIX}") from None
        return tokenizer

    def token_ids(self, text: str) -> list[int]:
        """mBERT ids of the normalised text, without [CLS]/[SEP] and without the Bark offset."""
        return self._tokenizer.encode(normalize_whitespace(text), add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.token_ids(text))

    def encode(self, text: str) -> EncodedText:
        """Offset ids truncated to 256 (the count dropped is reported) and right-padded."""
        if not normalize_whitespace(text):
            raise ValueError("text is empty (after whitespace is collapsed there is nothing to say)")
        ids = np.asarray(self.token_ids(text), dtype=np.int64) + TEXT_ENCODING_OFFSET
        n_dropped = max(0, len(ids) - MAX_TEXT_TOKENS)
        ids = ids[:MAX_TEXT_TOKENS]
        padded = np.full(MAX_TEXT_TOKENS, TEXT_PAD_TOKEN, dtype=np.int64)
        padded[: len(ids)] = ids
        return EncodedText(padded, len(ids), n_dropped)


def _build(path: Path):
    """The `tokenizers` object for a tokenizer.json, or for a WordPiece vocab.txt as mBERT (cased) reads it."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    if path.suffix == ".json":
        return Tokenizer.from_file(str(path))
    # Cased multilingual BERT: no lower-casing, no accent stripping, CJK split, controls dropped.
    return BertWordPieceTokenizer(
        str(path), clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
