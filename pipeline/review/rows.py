"""A listed row on the review page: player, waveform, chunk table and text; error rows as a table."""

from __future__ import annotations

import base64
import html
import io
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from pipeline.review.chunks import chunk_row_html, chunk_spans, failed_marks, is_failed
from pipeline.review.listing import Shown
from pipeline.review.waveform import waveform_svg
from pipeline.storage import Store

# libsndfile's Opus "compression level" picks the bitrate: 0.95 gives ~20 kb/s for 24 kHz mono.
OPUS_LEVEL = 0.95
OPUS_RATE = 24_000
ENCODE_BLOCK_S = 4  # seconds handed to libsndfile per write: see pipeline/audio/encode.py
# The preview's size estimated before encoding (~20 kb/s, under it for speech): a row that cannot fit the
# page's remaining budget is linked without spending the encoder's time (the dearest step of a page).
PREVIEW_BYTES_PER_S = 2_500


def preview_opus(audio: np.ndarray, sr: int) -> bytes:
    """Low-bitrate Ogg Opus of mono audio [N] for the page (resampled to 24 kHz when needed)."""
    if sr != OPUS_RATE:
        g = gcd(int(sr), OPUS_RATE)
        audio = resample_poly(audio, OPUS_RATE // g, int(sr) // g).astype(np.float32)
    buf = io.BytesIO()
    block = ENCODE_BLOCK_S * OPUS_RATE
    with sf.SoundFile(buf, "w", OPUS_RATE, 1, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL) as f:
        for start in range(0, len(audio), block):
            f.write(np.clip(audio[start : start + block], -1, 1))
    return buf.getvalue()


def row_html(store: Store, row: Shown, budget: list[int], audio_href: str, pauses: tuple[float, float]) -> str:
    """A finished row's section; its audio is read here, and only here (the rows a page shows)."""
    m = row.record
    chunks = list(m.get("chunks") or [])
    title = m.get("title") or m.get("input_title")
    head = html.escape(row.id) + (f" — {html.escape(str(title))}" if title else "")
    badge = "<span class=bad>flagged</span>" if m.get("flagged") or row.failed else "<span class=good>ok</span>"
    facts = f"{(m.get('duration_s') or 0):.1f} s, {len(chunks)} chunk(s), voice {html.escape(str(m.get('voice')))}"
    row_s = float(m.get("duration_s") or 0.0)
    spans = chunk_spans(chunks, row_s, *pauses)
    player, wave = _audio_html(store, row, budget, audio_href, failed_marks(chunks, spans, row_s))
    at = {id(c): s for c, s in zip(chunks, spans, strict=True)}
    failed = [c for c in chunks if is_failed(c)]
    ordered = failed + [c for c in chunks if not is_failed(c)]
    heard = any(c.get("transcript") is not None for c in chunks)
    cells = "".join(chunk_row_html(c, at[id(c)], heard, _measures_html(c), _gates_html(c)) for c in ordered)
    heads = ["chunk", "time", "attempts", "failed gates", "measures", "text given to Bark"]
    heads += ["heard (speech check)"] if heard else []
    text = html.escape(m.get("text") or "")
    return (
        f"<section class=row id='row-{html.escape(row.id)}'><h3>{head} {badge}</h3><p class=muted>{facts}</p>"
        f"{player}{wave}<table class=chunks><tr>{''.join(f'<th>{h}</th>' for h in heads)}</tr>{cells}</table>"
        f"<details><summary>row text</summary><p>{text}</p></details></section>"
    )


def errors_html(rows: list[Shown]) -> str:
    """Error rows as one table: id, stage, error."""
    cells = "".join(
        f"<tr class=failrow><td>{html.escape(r.id)}</td><td>{html.escape(str(r.record.get('stage') or '?'))}</td>"
        f"<td>{html.escape(str(r.record.get('error') or ''))}</td></tr>"
        for r in rows
    )
    return f"<table class=errors><tr><th>id</th><th>stage</th><th>error</th></tr>{cells}</table>"


def _audio_html(
    store: Store, row: Shown, budget: list[int], audio_href: str, marks: list[tuple[float, float, str]]
) -> tuple[str, str]:
    path = row.record.get("audio_path")
    if not path:
        return "<p class=muted>no audio path</p>", ""
    try:
        audio, sr = sf.read(io.BytesIO(store.read(path)), dtype="float32", always_2d=True)
    except (FileNotFoundError, RuntimeError, sf.LibsndfileError) as exc:
        return f"<p class=bad>audio {html.escape(path)} cannot be read ({html.escape(type(exc).__name__)})</p>", ""
    audio = audio.mean(axis=1)
    wave = waveform_svg(audio, marks, label=f"waveform of {row.id}")
    estimate = _base64_len(int(len(audio) / sr * PREVIEW_BYTES_PER_S))
    preview = preview_opus(audio, sr) if estimate <= budget[0] else b""
    encoded = _base64_len(len(preview))
    if preview and encoded <= budget[0]:
        budget[0] -= encoded
        uri = "data:audio/ogg;codecs=opus;base64," + base64.b64encode(preview).decode()
        return f"<audio controls preload=metadata src='{uri}'></audio>", wave
    href = html.escape(audio_href + path)
    return (f"<p>audio not embedded (page budget used): <a href='{href}'>{html.escape(path)}</a></p>", wave)


def _base64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


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
