"""`barkpipe report`: dataset summary, flagged rows and chunks first, players, waveforms, gates, text, transcript.

Audio is embedded as Ogg Opus data URIs (about 20 kb/s: plenty to judge speech) so the file
works anywhere, offline, as one attachment. Flagged rows are embedded first, then the others,
until `max_embed_bytes` is used up; rows past it get a link to their file in the run instead.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from pipeline.config import SegmentConfig
from pipeline.output.layout import ERRORS, METADATA, SUMMARY
from pipeline.output.read import manifest_error_rows, newest_rows, read_committed_latest
from pipeline.output.summary import read_summary
from pipeline.review.chunks import chunk_row_html, chunk_spans, failed_marks, is_failed
from pipeline.review.dataset import dataset_html, dataset_stats
from pipeline.review.waveform import waveform_svg
from pipeline.storage import Store, open_fs, retry

MAX_EMBED_BYTES = 20 * 2**20  # audio budget of one page (base64 adds a third on top)
# libsndfile's Opus "compression level" picks the bitrate: 0.95 gives ~20 kb/s for 24 kHz mono.
OPUS_LEVEL = 0.95
OPUS_RATE = 24_000
REPORT_NAME = "report.html"


@dataclass
class RowView:
    """One row as the page shows it."""

    id: str
    meta: dict = field(default_factory=dict)
    error: tuple[str, str] | None = None  # (stage, message) for error rows

    @property
    def chunks(self) -> list[dict]:
        return list(self.meta.get("chunks") or [])

    @property
    def failed_chunks(self) -> list[dict]:
        return [c for c in self.chunks if is_failed(c)]


@dataclass
class Run:
    """What an output folder holds: every row once (its newest record), across all runs that wrote it."""

    summary: dict | None  # summary.json: the last invocation only
    done: list[RowView]
    errors: list[RowView]
    superseded: int = 0  # older records of redone rows

    @property
    def pauses(self) -> tuple[float, float]:
        """(sentence, paragraph) pause of the last run's config, else the defaults: for estimated spans."""
        segment = ((self.summary or {}).get("config") or {}).get("segment") or {}
        fields = SegmentConfig.model_fields
        return (
            float(segment.get("sentence_pause_s", fields["sentence_pause_s"].default)),
            float(segment.get("paragraph_pause_s", fields["paragraph_pause_s"].default)),
        )


def load_rows(store: Store) -> tuple[dict | None, list[RowView], list[RowView]]:
    """(summary.json or None, finished rows, error rows) of the run under `store`."""
    run = load_run(store)
    return run.summary, run.done, run.errors


def load_run(store: Store) -> Run:
    """The output under `store`: summary.json and every row's newest metadata or error record."""
    summary = read_summary(store)
    latest = read_committed_latest(store)
    meta = list(newest_rows(store, METADATA, latest=latest))  # a redone row once, as its newest revision
    failed = [*newest_rows(store, ERRORS, latest=latest), *manifest_error_rows(store)]
    done = [RowView(str(r["id"]), r) for r in meta]
    errors = [RowView(str(r.get("id")), error=(r.get("stage") or "?", r.get("error") or "")) for r in failed]
    if summary is None and not done and not errors:
        raise FileNotFoundError(
            f"{store.root} holds no run (no {SUMMARY}, {METADATA}/ or {ERRORS}/); point OUTPUT at a run's output.path"
        )
    return Run(summary, done, errors, latest.superseded)


def build_report(store: Store, *, audio_href: str = "", max_embed_bytes: int = MAX_EMBED_BYTES) -> str:
    """The page's HTML. `audio_href` prefixes links to audio files that are not embedded."""
    run = load_run(store)
    done, errors = run.done, run.errors
    flagged = sorted(
        (r for r in done if r.meta.get("flagged") or r.failed_chunks), key=lambda r: (-len(r.failed_chunks), r.id)
    )
    rest = sorted((r for r in done if r not in flagged), key=lambda r: r.id)
    budget = [max_embed_bytes]
    body = [_summary_html(run)]
    body.append(f"<h2>Flagged rows ({len(flagged)})</h2>")
    body += [_row_html(store, r, budget, audio_href, run.pauses) for r in flagged] or ["<p class=muted>None.</p>"]
    body.append(f"<h2>Error rows ({len(errors)})</h2>")
    body.append(_errors_html(errors) if errors else "<p class=muted>None.</p>")
    body.append(f"<h2>Other rows ({len(rest)})</h2>")
    body += [_row_html(store, r, budget, audio_href, run.pauses) for r in rest] or ["<p class=muted>None.</p>"]
    title = "barkpipe review: " + html.escape(os.path.basename(store.root.rstrip("/")) or store.root)
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
        f"<body><h1>{title}</h1>{''.join(body)}</body></html>"
    )


def write_report(
    output: str, out: str | None = None, storage_options: dict | None = None, max_embed_bytes: int = MAX_EMBED_BYTES
) -> str:
    """Write the page to OUTPUT/report.html (or `out`, local or URL); returns where it went."""
    store = Store.open(output, storage_options)
    if out is None:
        page = build_report(store, audio_href="", max_embed_bytes=max_embed_bytes)
        return store.write(REPORT_NAME, page.encode())
    base = store.root if not store.local else "file://" + os.path.abspath(store.root)
    data = build_report(store, audio_href=base.rstrip("/") + "/", max_embed_bytes=max_embed_bytes).encode()
    if "://" in out:
        fs, path = open_fs(out, storage_options)
        retry(fs.pipe_file, path, data, what=out)
        return out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(data)
    return out


def preview_opus(audio: np.ndarray, sr: int) -> bytes:
    """Low-bitrate Ogg Opus of mono audio [N] for the page (resampled to 24 kHz when needed)."""
    if sr != OPUS_RATE:
        g = gcd(int(sr), OPUS_RATE)
        audio = resample_poly(audio, OPUS_RATE // g, int(sr) // g).astype(np.float32)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", OPUS_RATE, 1, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL) as f:
        for start in range(0, len(audio), 4 * OPUS_RATE):  # blocks: see pipeline/audio/encode.py
            f.write(np.clip(audio[start : start + 4 * OPUS_RATE], -1, 1))
    return buf.getvalue()


def _row_html(store: Store, row: RowView, budget: list[int], audio_href: str, pauses: tuple[float, float]) -> str:
    m = row.meta
    title = m.get("title") or m.get("input_title")
    head = html.escape(row.id) + (f" — {html.escape(str(title))}" if title else "")
    badge = "<span class=bad>flagged</span>" if m.get("flagged") else "<span class=good>ok</span>"
    facts = f"{(m.get('duration_s') or 0):.1f} s, {len(row.chunks)} chunk(s), voice {html.escape(str(m.get('voice')))}"
    row_s = float(m.get("duration_s") or 0.0)
    spans = chunk_spans(row.chunks, row_s, *pauses)
    player, wave = _audio_html(store, row, budget, audio_href, failed_marks(row.chunks, spans, row_s))
    at = {id(c): s for c, s in zip(row.chunks, spans, strict=True)}
    failed = row.failed_chunks
    ordered = failed + [c for c in row.chunks if c not in failed]
    heard = any(c.get("transcript") is not None for c in row.chunks)
    chunks = "".join(chunk_row_html(c, at[id(c)], heard, _measures_html(c), _gates_html(c)) for c in ordered)
    heads = ["chunk", "time", "attempts", "failed gates", "measures", "text given to Bark"]
    heads += ["heard (speech check)"] if heard else []
    text = html.escape(m.get("text") or "")
    return (
        f"<section class=row id='row-{html.escape(row.id)}'><h3>{head} {badge}</h3><p class=muted>{facts}</p>"
        f"{player}{wave}<table class=chunks><tr>{''.join(f'<th>{h}</th>' for h in heads)}</tr>{chunks}</table>"
        f"<details><summary>row text</summary><p>{text}</p></details></section>"
    )


def _audio_html(
    store: Store, row: RowView, budget: list[int], audio_href: str, marks: list[tuple[float, float, str]]
) -> tuple[str, str]:
    path = row.meta.get("audio_path")
    if not path:
        return "<p class=muted>no audio path</p>", ""
    try:
        audio, sr = sf.read(io.BytesIO(store.read(path)), dtype="float32", always_2d=True)
    except (FileNotFoundError, RuntimeError, sf.LibsndfileError) as exc:
        return f"<p class=bad>audio {html.escape(path)} cannot be read ({html.escape(type(exc).__name__)})</p>", ""
    audio = audio.mean(axis=1)
    wave = waveform_svg(audio, marks, label=f"waveform of {row.id}")
    preview = preview_opus(audio, sr)
    encoded = 4 * ((len(preview) + 2) // 3)
    if encoded <= budget[0]:
        budget[0] -= encoded
        uri = "data:audio/ogg;codecs=opus;base64," + base64.b64encode(preview).decode()
        return f"<audio controls preload=metadata src='{uri}'></audio>", wave
    href = html.escape(audio_href + path)
    return (f"<p>audio not embedded (page budget used): <a href='{href}'>{html.escape(path)}</a></p>", wave)


def _measures_html(c: dict) -> str:
    failed = c.get("failed") or []
    measures = dict(c.get("measures") or {})  # Arrow maps arrive as [(key, value), ...]
    return ", ".join(
        f"<span class={'bad' if _gate_of(k, failed) else 'm'}>{html.escape(k)}={v:.3g}</span>"
        for k, v in sorted(measures.items())
    )


def _gates_html(c: dict) -> str:
    failed = c.get("failed") or []
    return html.escape(", ".join(failed)) if failed else ("passed" if c.get("passed") else "—")


def _gate_of(measure: str, failed: list[str]) -> bool:
    """A measure is highlighted when a failed gate is named after it (duration_ratio_low -> duration_ratio)."""
    aliases = {"longest_silence": "longest_silence_s", "rms_low": "rms_db", "rms_high": "rms_db"}
    return any(g == measure or g.startswith(measure + "_") or aliases.get(g) == measure for g in failed)


def _errors_html(errors: list[RowView]) -> str:
    rows = "".join(_error_row_html(r) for r in sorted(errors, key=lambda r: r.id))
    return f"<table><tr><th>id</th><th>stage</th><th>error</th></tr>{rows}</table>"


def _error_row_html(row: RowView) -> str:
    assert row.error is not None, f"row {row.id!r} is listed as an error row but carries no error"
    stage, message = row.error
    return (
        f"<tr class=failrow><td>{html.escape(row.id)}</td><td>{html.escape(stage)}</td>"
        f"<td>{html.escape(message)}</td></tr>"
    )


def _summary_html(run: Run) -> str:
    stats = dataset_stats([r.meta for r in run.done], [r.error for r in run.errors if r.error], run.superseded)
    head = (
        "<h2>Dataset</h2><p class=muted>Every row of this output across all runs, each in its newest "
        "take (a redone row counts once).</p>" + dataset_html(stats)
    )
    summary = run.summary
    if summary is None:
        return head + f"<h2>Last run</h2><p class=muted>no {SUMMARY} (the run has not finished)</p>"
    keys = ("input_rows", "ok", "errors", "accounted", "audio_hours", "config_hash")
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(str(summary.get(k)))}</td></tr>" for k in keys if k in summary)
    last = summary.get("this_run") or {}
    cells += "".join(
        f"<tr><th>this run: {html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in last.items()
        if k != "error_samples"
    )
    return f"{head}<h2>Last run ({SUMMARY})</h2><table class=summary>{cells}</table>"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:20px} h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:0 0 4px}
section.row{border:1px solid #ddd;border-radius:6px;padding:12px;margin:12px 0}
table{border-collapse:collapse;width:100%;margin:8px 0} th,td{border:1px solid #e3e3e3;padding:3px 6px;
text-align:left;vertical-align:top} table.summary{width:auto}
.bad{color:#c62828;font-weight:600} .good{color:#2e7d32;font-weight:600} .muted{color:#777} .m{color:#444}
tr.failrow{background:#fff3f3} svg.wave{width:100%;height:80px;display:block;background:#f7f8fa}
audio{width:100%;margin:4px 0} table.chunks td:nth-child(2){white-space:nowrap}
table.chunks td:nth-child(6),table.chunks td:nth-child(7){width:28%}
del{background:#ffe1e1;color:#8a1c1c} ins{background:#dff5e1;color:#1b5e20;text-decoration:none}
"""
