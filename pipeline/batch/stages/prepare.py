"""The prepare stage (CPU): check each row, normalise and split its text, plan its chunks and seeds.

A row leaves with its whole chunk plan in one list column, so its chunks travel together to the
engine (no shuffle). Bad rows leave with an error column and no plan; the run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import GenerationConfig, SegmentConfig
from pipeline.batch.stages.faults import StageError, is_fatal

if TYPE_CHECKING:
    from pipeline.text.lexicon import Lexicon

log = logging.getLogger(__name__)
# Bark's text tokenizer is cased multilingual BERT for every checkpoint; bark_model ships its vocab,
# so a node without the weights (remote weights, a CPU-only node) counts tokens exactly the same.
BUNDLED_VOCAB = "bert-base-multilingual-cased-vocab.txt"
# Rows' lexicon columns compiled and kept per actor (rows of one book usually share one).
ROW_LEXICON_CACHE = 16
MAX_NOTES = 32  # distinct SSML notes logged per actor


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (same on every machine and Python run, unlike hash())."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


def chunk_seed(row_seed: int, index: int, attempt: int = 0) -> int:
    """Chunk 0's first attempt uses the row seed itself, so a one-chunk row matches `barkpipe say --seed`."""
    return row_seed if index == 0 and attempt == 0 else derive_seed(row_seed, index, attempt)


def token_counter(weights: str) -> Callable[[str], int]:
    """Bark's exact text-token count, without torch: the weights folder's own vocabulary when
    `weights` is a local folder that has one, else the mBERT vocabulary bundled in bark_model."""
    from importlib.util import find_spec

    from pipeline.speak import _counter, text_token_counter

    if Path(weights).is_dir():
        count = text_token_counter(weights)
        if count is not None:
            return count
    # find_spec locates the package without running bark_model/__init__ (which imports torch).
    spec = find_spec("bark_model")
    assert spec is not None and spec.submodule_search_locations, "bark_model is not importable"
    package = Path(spec.submodule_search_locations[0])
    return _counter(package / "assets" / BUNDLED_VOCAB)


class PrepareStage:
    """Ray Data callable class: loads the tokenizer once, then turns manifest rows into planned rows.

    settings_hash: content_hash of the run's config, folded into each row's row_hash; revisions:
    id -> revision for the rows a resumed run redoes (every other row is revision 0).
    """

    def __init__(self, weights: str, generation: GenerationConfig, segment: SegmentConfig,
                 settings_hash: str = "", revisions: dict[str, int] | None = None, text_format: str = "plain",
                 lexicon: Lexicon | None = None):  # fmt: skip
        """text_format: input.text_format (rows' default). lexicon: generation.lexicon already loaded by
        the driver (so worker nodes need no copy of the file); None loads generation.lexicon here, once."""
        from pipeline.text.lexicon import load_lexicon

        self.generation = generation
        self.segment = segment
        self.count_tokens = token_counter(weights)
        self.settings_hash = settings_hash
        self.revisions = revisions or {}
        self.text_format = text_format
        if lexicon is None and generation.lexicon:
            lexicon = load_lexicon(generation.lexicon)
        self.lexicon = lexicon
        self._row_lexicons: dict[str, Lexicon] = {}  # a row's lexicon column text -> merged lexicon
        self._noted: set[str] = set()

    def __call__(self, batch):
        import pyarrow as pa

        from pipeline.manifest.read import ID, OPTIONAL_COLUMNS, TEXT
        from pipeline.manifest.rows import table_rows
        from pipeline.output.schema import carried_name, missing_columns, prepared_fields

        missing_columns(batch, (ID, TEXT))
        own = [name for name in batch.column_names if name in (ID, TEXT, *OPTIONAL_COLUMNS)]
        records = [self.prepare_row(raw) for raw in table_rows(batch.select(own))]
        table = pa.Table.from_pylist(records, schema=pa.schema(prepared_fields()))
        for name in batch.column_names:
            if name not in own:
                table = table.append_column(carried_name(name), batch.column(name))
        return table

    def prepare_row(self, raw: dict) -> dict:
        """One prepared record: the row's settings and chunk plan, or its error."""
        from pipeline.output.read import raw_row_hash, row_hash
        from pipeline.manifest.rows import display_id, parse_row
        from pipeline.manifest.voices import resolve_voice_spec

        start = time.perf_counter()
        values, problem = parse_row(raw, self.segment.max_text_chars)
        row_id = display_id(raw.get("id"))
        record = {
            "id": row_id if isinstance(row_id, str) else None,
            "text": raw.get("text") if isinstance(raw.get("text"), str) else None,
            # The same hash the driver computes from the manifest (resume.raw_row_hash), so resume can
            # tell a changed row; from the values already parsed when the row parses.
            "row_hash": row_hash(values, self.settings_hash)
            if values is not None
            else raw_row_hash(raw, self.settings_hash, self.segment.max_text_chars),
            "revision": self.revisions.get(row_id, 0) if isinstance(row_id, str) else 0,
        }
        if values is None:
            return record | {"error_stage": "validate", "error": problem}
        g = self.generation
        seed = values.seed if values.seed is not None else g.seed
        seed = derive_seed("id", values.id) if seed is None else seed
        language = values.language or self.segment.language
        voice = g.voice  # the config's voice is the user's own choice; a row's voice is data and is confined
        if values.voice:
            try:
                voice = resolve_voice_spec(values.voice, g.voice_dirs)
            except ValueError as exc:
                return record | {"error_stage": "voice", "error": str(exc)}
        record |= {
            "voice": voice,
            "seed": seed,
            "language": language,
            "text_temp": _pick(values.text_temp, g.text_temp),
            "waveform_temp": _pick(values.waveform_temp, g.waveform_temp),
            "max_duration": _pick(values.max_duration, g.max_duration),
        }
        try:
            chunks = self.split(values.text, language, voice, values.text_format, self._lexicon_for(values.lexicon))
        except StageError as exc:
            return record | {"error_stage": exc.stage, "error": str(exc)}
        except Exception as exc:
            if is_fatal(exc):
                raise
            return record | {"error_stage": "prepare", "error": f"unexpected {type(exc).__name__}: {exc}"}
        record["plan"] = [
            {
                "index": c.index,
                "text": c.text,
                "seed": chunk_seed(seed, c.index),
                "est_seconds": c.est_seconds,
                "paragraph_break_after": c.paragraph_break_after,
                "voice": getattr(c, "voice", voice),
                # An SSML <break>'s exact silence; plan_type drops it until it has the field (schema.py).
                "pause_after_s": getattr(c, "pause_after_s", None),
            }
            for c in chunks
        ]
        record["timings"] = {"prepare": time.perf_counter() - start}
        return record

    def split(self, text: str, language: str, voice: str | None = None, text_format: str | None = None,
              lexicon: Lexicon | None = None) -> list:  # fmt: skip
        """The row's chunks (pipeline.speak.plan_text): SSML read when text_format (else input.text_format)
        is "ssml"; `[voice: X]` tags, speaker lines and SSML <voice> cut voice segments first, so no chunk
        spans two voices; `lexicon` (else generation.lexicon) respells words after normalisation."""
        from pipeline.manifest.voices import resolve_voice_spec
        from pipeline.speak import TextError, plan_text

        g = self.generation
        try:
            chunks, notes = plan_text(
                text, self.segment, language=language, text_format=text_format or self.text_format, voice=voice,
                speakers=g.speakers, resolve=lambda spec: resolve_voice_spec(spec, g.voice_dirs),
                lexicon=self.lexicon if lexicon is None else lexicon, count_tokens=self.count_tokens,
            )  # fmt: skip
        except TextError as exc:
            raise StageError(exc.stage, str(exc)) from None
        for note in set(notes) - self._noted:  # once per actor: a million rows would repeat it a million times
            if len(self._noted) < MAX_NOTES:
                self._noted.add(note)
                log.warning("SSML: %s", note)
        return chunks

    def _lexicon_for(self, row_lines: str | None) -> Lexicon | None:
        """generation.lexicon with a row's own lexicon lines over it (already checked by parse_row)."""
        from pipeline.text.lexicon import parse_lexicon

        if row_lines is None:
            return None
        if row_lines not in self._row_lexicons:
            if len(self._row_lexicons) >= ROW_LEXICON_CACHE:
                self._row_lexicons.pop(next(iter(self._row_lexicons)))  # the oldest
            own = parse_lexicon(row_lines, "lexicon column")[0]
            self._row_lexicons[row_lines] = own if self.lexicon is None else self.lexicon.merged(own)
        return self._row_lexicons[row_lines]


def _pick(value, default):
    return default if value is None else float(value)
