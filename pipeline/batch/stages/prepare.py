"""The prepare stage (CPU): check each row, normalise and split its text, plan its chunks and seeds.

A row leaves with its whole chunk plan in one list column, so its chunks travel together to the
engine (no shuffle). Bad rows leave with an error column and no plan; the run goes on.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from pipeline.batch.plan import raw_row_hash, row_hash
from pipeline.batch.stages.faults import StageError, is_fatal
from pipeline.config import GenerationConfig, SegmentConfig
from pipeline.manifest.columns import ID, OPTIONAL_COLUMNS, TEXT, display_id
from pipeline.manifest.rows import parse_row, table_rows
from pipeline.manifest.voices import resolve_voice_spec
from pipeline.output.schema import carried_name, missing_columns, prepared_fields
from pipeline.text.chunks import TextError, chunk_seed, derive_seed, plan_text, token_counter
from pipeline.text.lexicon import Lexicon, load_lexicon, parse_lexicon

log = logging.getLogger(__name__)
# Rows' lexicon columns compiled and kept per actor (rows of one book usually share one).
ROW_LEXICON_CACHE = 16
MAX_NOTES = 32  # distinct SSML notes logged per actor


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
        start = time.perf_counter()
        values, problem = parse_row(raw, self.segment.max_text_chars)
        row_id = display_id(raw.get(ID))
        record = {
            "id": row_id if isinstance(row_id, str) else None,
            "text": raw.get("text") if isinstance(raw.get("text"), str) else None,
            # The same hash the driver computes from the manifest (batch.plan.raw_row_hash), so resume can
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
        """The row's chunks (pipeline.text.chunks.plan_text): SSML read when text_format (else input.text_format)
        is "ssml"; `[voice: X]` tags, speaker lines and SSML <voice> cut voice segments first, so no chunk
        spans two voices; `lexicon` (else generation.lexicon) respells words after normalisation."""
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
