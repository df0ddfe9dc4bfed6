"""Waveform pictures as inline SVG, drawn from the samples with numpy (no plotting library)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

WIDTH, HEIGHT = 800, 80  # SVG user units; the page stretches it to the card's width


def envelope(audio: np.ndarray, columns: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) of mono audio [N], each [columns] in [-1, 1] (zeros for empty audio)."""
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float32).ravel())
    if len(audio) == 0:
        return np.zeros(columns, np.float32), np.zeros(columns, np.float32)
    edges = np.linspace(0, len(audio), columns + 1).astype(np.int64)
    edges[1:] = np.maximum(edges[1:], edges[:-1] + 1)  # audio shorter than `columns`: repeat samples
    idx = np.minimum(edges[:-1], len(audio) - 1)
    lo = np.minimum.reduceat(audio, idx)
    hi = np.maximum.reduceat(audio, idx)
    return np.clip(lo, -1, 1), np.clip(hi, -1, 1)


def waveform_svg(audio: np.ndarray, marks: Sequence[tuple] = (), label: str = "waveform") -> str:
    """An <svg> of the waveform; `marks` are (start, end[, title]) fractions of the length shaded red
    (failed chunks); a title shows when the pointer rests on the shading."""
    lo, hi = envelope(audio)
    mid = HEIGHT / 2
    x = np.arange(len(hi))
    top = " ".join(f"{i},{mid - v * mid:.1f}" for i, v in zip(x, hi, strict=False))
    bottom = " ".join(f"{i},{mid - v * mid:.1f}" for i, v in zip(x[::-1], lo[::-1], strict=False))
    shades = "".join(_shade(*mark) for mark in marks)
    return (
        f'<svg class="wave" role="img" aria-label="{html.escape(label)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">{shades}'
        f'<line x1="0" y1="{mid}" x2="{WIDTH}" y2="{mid}" stroke="#bbb" stroke-width="0.5"/>'
        f'<polygon points="{top} {bottom}" fill="#3b6fd6"/></svg>'
    )


def _shade(start: float, end: float, title: str = "") -> str:
    tip = f"<title>{html.escape(title)}</title>" if title else ""
    # At least one unit wide, so a very short failed chunk is still seen.
    return (
        f'<rect class="failed" x="{start * WIDTH:.2f}" y="0" width="{max((end - start) * WIDTH, 1):.2f}" '
        f'height="{HEIGHT}" fill="#e5484d" fill-opacity="0.25">{tip}</rect>'
    )
