"""The review page's dataset summary: every row of an output across its runs, each in its newest take."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# Per-chunk measures whose spread the summary shows, with the direction that is bad.
DISTRIBUTED = (("wer", "high is bad"), ("cer", "high is bad"), ("speaker_similarity", "low is bad"))
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)  # min, p10, median, p90, max
SECONDS_PER_HOUR = 3600.0


@dataclass
class DatasetStats:
    """Counts over the newest record of every row id (metadata and errors parts of all runs)."""

    finished: int = 0
    flagged: int = 0
    errors: int = 0
    error_stages: dict = field(default_factory=dict)  # stage -> rows
    redone: int = 0  # rows whose newest record is a redo (revision > 0)
    superseded: int = 0  # older records of redone rows, not counted above
    audio_s: float = 0.0
    chunks: int = 0
    failed_chunks: int = 0
    configs: int = 0  # distinct config_hash values among finished rows
    measures: dict = field(default_factory=dict)  # measure -> per-chunk values of the kept attempts

    @property
    def rows(self) -> int:
        return self.finished + self.errors


def dataset_stats(done: list[dict], errors: list[tuple[str, str]], superseded: int = 0) -> DatasetStats:
    """Stats of finished rows' metadata records and error rows' (stage, message); superseded: records dropped."""
    stats = DatasetStats(finished=len(done), errors=len(errors), superseded=superseded)
    stats.error_stages = dict(Counter(stage for stage, _ in errors))
    values: dict[str, list[float]] = {name: [] for name, _ in DISTRIBUTED}
    for meta in done:
        chunks = list(meta.get("chunks") or [])
        failed = [c for c in chunks if c.get("passed") is False or c.get("failed")]
        stats.flagged += bool(meta.get("flagged") or failed)
        stats.redone += (meta.get("revision") or 0) > 0
        stats.audio_s += float(meta.get("duration_s") or 0.0)
        stats.chunks += len(chunks)
        stats.failed_chunks += len(failed)
        for c in chunks:
            measures = dict(c.get("measures") or {})  # Arrow maps arrive as [(key, value), ...]
            for name in values:
                if measures.get(name) is not None and np.isfinite(measures[name]):
                    values[name].append(float(measures[name]))
    stats.configs = len({m.get("config_hash") for m in done if m.get("config_hash")})
    stats.measures = {name: v for name, v in values.items() if v}
    return stats


def dataset_html(stats: DatasetStats) -> str:
    """The summary table and, where the listening checks ran, the spread of their per-chunk measures."""
    stages = ", ".join(f"{html.escape(str(s))}: {n}" for s, n in sorted(stats.error_stages.items()))
    facts = [
        ("rows", f"{stats.rows}"),
        ("finished", f"{stats.finished} ({stats.finished - stats.flagged} ok, {stats.flagged} flagged)"),
        ("error rows", f"{stats.errors}" + (f" ({stages})" if stages else "")),
        ("redone rows", f"{stats.redone} ({stats.superseded} older record(s) superseded)"),
        ("audio", f"{stats.audio_s / SECONDS_PER_HOUR:.3f} h ({stats.audio_s:.1f} s)"),
        ("chunks", f"{stats.chunks} ({stats.failed_chunks} failed their gates)"),
        ("configs", f"{stats.configs} distinct config_hash"),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    table = f"<table class='summary dataset'>{cells}</table>"
    if not stats.measures:
        return table
    heads = "".join(f"<th>{label}</th>" for label in ("min", "p10", "median", "p90", "max"))
    rows = "".join(
        f"<tr><th>{name} <span class=muted>({note})</span></th><td>{len(stats.measures[name])}</td>"
        + "".join(f"<td>{q:.3f}</td>" for q in np.quantile(stats.measures[name], QUANTILES))
        + "</tr>"
        for name, note in DISTRIBUTED
        if name in stats.measures
    )
    return (
        f"{table}<table class='summary spread'><tr><th>per chunk (kept attempt)</th><th>chunks</th>{heads}</tr>"
        f"{rows}</table>"
    )
