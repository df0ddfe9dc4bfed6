"""Cheap checks of every manifest row before a run (ids, text, seeds, voices, `[voice: X]` tags), grouped by kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from pipeline.manifest.columns import ID, TEXT, display_id, id_issues
from pipeline.manifest.read import inspect_manifest, read_ids
from pipeline.manifest.rows import parse_row_issue, table_rows
from pipeline.manifest.voices import resolve_voice_spec
from pipeline.storage import redact_url
from pipeline.text.ssml import SsmlError, parse_ssml
from pipeline.text.voices import tag_voice_specs

MAX_IDS_SHOWN = 5  # ids named per problem line; errors/ (after a run) holds them all
SCAN_BATCH_ROWS = 8192  # manifest rows read at a time (texts included)
# check_voice(resolved spec, weights, key): raises ValueError when the weights cannot speak in that voice.
# pipeline.checks passes its own; taken as an argument so this contract module never imports the `validate` composer.
VoiceCheck = Callable[[str, str | Path, str], None]


@dataclass
class RowGroup:
    """Rows that share one kind of problem: how many, the first ids, and the first row's sentence."""

    kind: str
    example: str
    ids: list[str] = field(default_factory=list)
    rows: int = 0
    unnamed: int = 0  # ids past MAX_IDS_SHOWN

    def add(self, shown: str, rows: int = 1) -> None:
        self.rows += rows
        if shown in self.ids:
            return
        if len(self.ids) < MAX_IDS_SHOWN:
            self.ids.append(shown)
        else:
            self.unnamed += 1

    def line(self) -> str:
        more = f" and {self.unnamed} more" if self.unnamed else ""
        label = "id" if len(self.ids) == 1 and not more else "ids"
        return f"manifest: {self.rows} row(s) {self.kind} ({label} {', '.join(self.ids)}{more}): {self.example}"


class Groups:
    """Problem groups in the order their kinds were first seen."""

    def __init__(self) -> None:
        self.by_kind: dict[str, RowGroup] = {}

    def add(self, kind: str, example: str, shown: str, rows: int = 1) -> None:
        self.by_kind.setdefault(kind, RowGroup(kind, example)).add(shown, rows)

    def lines(self) -> list[str]:
        return [g.line() for g in self.by_kind.values()]


def check_manifest(cfg, report, rows: bool, weights_ok: bool, check_voice: VoiceCheck) -> None:
    """Schema, ids and (rows) every row's values; a manifest that cannot be read is one problem.

    check_voice: pipeline.checks.check_voice, asked about every voice a row names when weights_ok.
    """
    i = cfg.input
    try:
        info = inspect_manifest(i.path, i.storage_options, i.id_column, i.text_column)
    except (ValueError, OSError) as exc:  # FileNotFoundError and PermissionError are OSErrors
        report.problems.append(str(exc))
        return
    report.manifest = info
    if info.num_rows == 0:
        report.passed.append(("manifest", f"no rows in {len(info.files)} file(s)"))
        return
    report.passed.append(("manifest", f"{info.num_rows} rows in {len(info.files)} file(s), "
                                      f"columns {', '.join(info.schema.names)}"))  # fmt: skip
    report.row_problems += id_problem_lines(read_ids(info))
    if rows:

        def problem(spec: str, where: str) -> str | None:
            return voice_problem(spec, where, cfg, check_voice if weights_ok else None)

        report.row_problems += [redact_url(line) for line in row_problem_lines(info, cfg, problem)]


def voice_problem(spec: str, where: str, cfg, check_voice: VoiceCheck | None) -> str | None:
    """Why a voice a manifest row names cannot be used (as the prepare stage and the engine will find), or None.

    A row's voice is data: it must be a preset or an .npz inside generation.voice_dirs
    (pipeline.manifest.voices); a preset must also be one the weights hold (check_voice; None when the
    weights cannot be read).
    """
    try:
        resolved = resolve_voice_spec(spec, cfg.generation.voice_dirs)
        if check_voice is not None:
            check_voice(resolved, cfg.model.weights, where)
    except ValueError as exc:  # CheckError is a ValueError
        text = str(exc)
        return text if text.startswith(where) else f"{where}: {text}"
    return None


def id_problem_lines(ids: list) -> list[str]:
    """One line per kind of bad id (null, empty, duplicated, clashing file names...)."""
    groups = Groups()
    for kind, shown, sentence, rows in id_issues(ids):
        groups.add(kind, sentence, "null" if shown is None else repr(shown) if not shown.strip() else shown, rows)
    return groups.lines()


def row_problem_lines(info, cfg, voice_problem: Callable[[str, str], str | None]) -> list[str]:
    """One line per kind of row problem, over every row of the manifest.

    voice_problem(spec, where): why a voice a row names (its voice column, or a `[voice: X]` tag
    in its text) cannot be used, else None; asked once per distinct spec.
    """
    groups = Groups()
    known: dict[tuple[str, str], str | None] = {}

    def voice(spec: str, where: str) -> str | None:
        if (spec, where) not in known:
            known[spec, where] = voice_problem(spec, where)
        return known[spec, where]

    for number, raw in enumerate(_rows(info), start=1):
        _check_row(raw, number, cfg, groups, voice)
    return groups.lines()


def _check_row(raw: dict, number: int, cfg, groups: Groups, voice: Callable[[str, str], str | None]) -> None:
    row_id = display_id(raw.get(ID))
    shown = row_id if isinstance(row_id, str) and row_id.strip() else f"row {number}"
    # The id is judged by id_problem_lines; only the row's other values count here.
    values, issue = parse_row_issue({**raw, ID: "row"}, cfg.segment.max_text_chars)
    if issue is not None:
        groups.add(issue[0], issue[1], shown)
        return
    assert values is not None, "parse_row_issue gives values when it finds no issue"
    if (values.text_format or cfg.input.text_format) == "ssml":
        try:
            parse_ssml(values.text, values.language or "en")  # bounded and safe: a hostile row costs little
        except SsmlError as exc:
            groups.add("have SSML that cannot be read", f"{exc}; fix the markup or set text_format plain", shown)
    if values.voice:
        problem = voice(values.voice, "manifest column 'voice'")
        if problem:
            groups.add(f"name the unusable voice {values.voice!r}", problem, shown)
    for spec in tag_voice_specs(values.text, cfg.generation.speakers):
        problem = voice(spec, f"[voice: {spec}]")
        if problem:
            kind = f"have a [voice: {spec}] tag that names no configured voice"
            hint = "; name a generation.speakers entry, a preset, or an .npz inside generation.voice_dirs"
            groups.add(kind, problem + hint, shown)


def _rows(info):
    """The manifest's rows with canonical column names (id, text, optional columns), batch by batch."""
    columns = [info.id_column, info.text_column, *info.optional]
    names = [ID, TEXT, *info.optional]
    dataset = pads.dataset(info.files, filesystem=info.fs, format="parquet", schema=info.schema)
    for batch in dataset.to_batches(columns=columns, batch_size=SCAN_BATCH_ROWS):
        yield from table_rows(pa.Table.from_batches([batch]).rename_columns(names))
