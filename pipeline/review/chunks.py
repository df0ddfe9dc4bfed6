"""The review page's chunk rows: where each chunk lies in its row's audio, and its text beside what was heard."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from difflib import SequenceMatcher

# Words compare without case and punctuation: the recogniser writes neither as the text did.
_NOT_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class Span:
    """A chunk's place in its row's audio, in seconds; `exact` when finish recorded it at join time."""

    start_s: float
    end_s: float
    exact: bool


def chunk_spans(chunks: list[dict], row_s: float, pause_s: float, paragraph_pause_s: float) -> list[Span]:
    """Each chunk's span in a row of `row_s` seconds: chunks[].start_s/end_s where finish recorded them;
    otherwise (older outputs) estimated from the chunk durations and the pauses between them,
    scaled to the row's length (trimming shortened the chunks by an unknown amount)."""
    if chunks and all(c.get("start_s") is not None and c.get("end_s") is not None for c in chunks):
        return [Span(float(c["start_s"]), float(c["end_s"]), True) for c in chunks]
    starts, t = [], 0.0
    for k, c in enumerate(chunks):
        if k > 0:
            t += paragraph_pause_s if chunks[k - 1].get("paragraph_break_after") else pause_s
        starts.append((t, t + float(c.get("duration_s") or 0.0)))
        t = starts[-1][1]
    scale = row_s / t if t > 0 else 0.0
    return [Span(a * scale, b * scale, False) for a, b in starts]


def is_failed(c: dict) -> bool:
    return c.get("passed") is False or bool(c.get("failed"))


def failed_marks(chunks: list[dict], spans: list[Span], row_s: float) -> list[tuple[float, float, str]]:
    """(start, end, label) of each failed chunk as fractions of the row, for the waveform's shading."""
    if row_s <= 0:
        return []
    marks = []
    for c, s in zip(chunks, spans, strict=True):
        if is_failed(c):
            where = "" if s.exact else " (estimated position)"
            label = f"chunk {c.get('index')}: {s.start_s:.2f}–{s.end_s:.2f} s{where}"
            marks.append((min(max(s.start_s / row_s, 0.0), 1.0), min(max(s.end_s / row_s, 0.0), 1.0), label))
    return marks


def chunk_row_html(c: dict, span: Span, heard_column: bool, measures_html: str, gates_html: str) -> str:
    """One <tr>: index, time span, attempts, gates, measures, the text Bark was given and (when the
    speech check ran on this output) what it heard, with differing words marked."""
    text, heard = c.get("text"), c.get("transcript")
    if text is None:
        chars = f" {c['chars']} chars;" if c.get("chars") is not None else ""
        said = f"<span class=muted>—{chars} text not recorded (this output predates chunks[].text)</span>"
        heard_cell = html.escape(heard) if heard else "<span class=muted>—</span>"
    elif heard is not None:
        said, heard_cell = word_diff(text, heard)
    else:
        said, heard_cell = html.escape(text), "<span class=muted>not checked</span>"
    approx = "" if span.exact else "≈ "
    cls = " class=failrow" if is_failed(c) else ""
    cells = [
        str(c.get("index")),
        f"<span class=muted>{approx}{span.start_s:.2f}–{span.end_s:.2f} s</span>",
        str(c.get("attempts")),
        gates_html,
        measures_html,
        f"<span class=said>{said}</span>",
    ]
    if heard_column:
        cells.append(f"<span class=heard>{heard_cell}</span>")
    return f"<tr{cls}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def word_diff(text: str, heard: str) -> tuple[str, str]:
    """(text, heard) as escaped HTML: words of the text not heard in <del>, heard words not in the text in <ins>."""
    said, got = text.split(), heard.split()
    match = SequenceMatcher(a=[_key(w) for w in said], b=[_key(w) for w in got], autojunk=False)
    left, right = [], []
    for tag, i1, i2, j1, j2 in match.get_opcodes():
        a, b = html.escape(" ".join(said[i1:i2])), html.escape(" ".join(got[j1:j2]))
        if tag == "equal":
            left.append(a)
            right.append(b)
            continue
        if a:
            left.append(f"<del>{a}</del>")
        if b:
            right.append(f"<ins>{b}</ins>")
    return " ".join(left), " ".join(right)


def _key(word: str) -> str:
    return _NOT_WORD.sub("", word.casefold())
