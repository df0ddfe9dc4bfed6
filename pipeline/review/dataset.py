"""The review page's dataset summary: every row of an output in its newest take, gathered in one streaming pass."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Per-chunk measures whose spread the summary shows, with the direction that is bad.
DISTRIBUTED = (("wer", "high is bad"), ("cer", "high is bad"), ("speaker_similarity", "low is bad"))
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)  # min, p10, median, p90, max
SECONDS_PER_HOUR = 3600.0
# Row durations' histogram: bin edges in seconds (the last bin is open), from sentences to chapters.
DURATION_EDGES_S = (0, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# The spread is exact up to this many values per measure, then a uniform sample of this size (8 bytes
# a value: memory stays bounded at any size, and quantiles of 100k values are good to ~0.3 %).
SPREAD_SAMPLE = 100_000
SPREAD_SEED = 0  # the sample's draws: the same output gives the same page
BAR_PX = 240  # the histogram's longest bar


class Spread:
    """A bounded uniform sample of one measure's values (bottom-k of random keys): exact while it fits."""

    def __init__(self, size: int = SPREAD_SAMPLE, seed: int = SPREAD_SEED) -> None:
        self.size, self.count = size, 0
        self._rng = np.random.default_rng(seed)
        self._values, self._keys = np.empty(0), np.empty(0)
        self.low, self.high = np.inf, -np.inf  # exact, sampled or not

    def add(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        self.count += len(values)
        if len(values):
            self.low, self.high = min(self.low, values.min()), max(self.high, values.max())
        self._values = np.concatenate([self._values, values])
        self._keys = np.concatenate([self._keys, self._rng.random(len(values))])
        if len(self._values) > 2 * self.size:  # trim rarely: amortised linear
            self._trim()

    @property
    def sampled(self) -> bool:
        return self.count > self.size

    def quantiles(self) -> np.ndarray:
        """QUANTILES of the values seen: min and max exact, the rest from the sample once it is one."""
        self._trim()
        out = np.quantile(self._values, QUANTILES)
        out[0], out[-1] = self.low, self.high
        return out

    def _trim(self) -> None:
        if len(self._values) > self.size:
            keep = np.argpartition(self._keys, self.size)[: self.size]
            self._values, self._keys = self._values[keep], self._keys[keep]


@dataclass
class DatasetStats:
    """Counts over the newest record of every row id (metadata and errors of all runs)."""

    finished: int = 0
    flagged: int = 0
    errors: int = 0
    error_stages: Counter = field(default_factory=Counter)  # stage -> rows
    redone: int = 0  # rows whose newest record is a redo (revision > 0)
    superseded: int = 0  # older records of redone rows, not counted above
    audio_s: float = 0.0
    chunks: int = 0
    failed_chunks: int = 0
    config_hashes: set = field(default_factory=set)  # distinct config_hash values among finished rows
    gate_rows: Counter = field(default_factory=Counter)  # gate -> finished rows with a chunk that failed it
    gate_chunks: Counter = field(default_factory=Counter)  # gate -> chunks that failed it
    durations: list = field(default_factory=lambda: [0] * len(DURATION_EDGES_S))  # rows per duration bin
    measures: dict = field(default_factory=lambda: {name: Spread() for name, _ in DISTRIBUTED})

    @property
    def rows(self) -> int:
        return self.finished + self.errors

    def add_finished(self, durations: np.ndarray, revisions: np.ndarray) -> None:
        """Finished rows' newest records, from their flat columns (no chunk is read here): durations [rows] in
        seconds (a missing one as 0), revisions [rows]."""
        self.finished += len(durations)
        self.redone += int(np.count_nonzero(revisions > 0))
        self.audio_s += float(durations.sum())
        # A bin holds its left edge (side="right"); a negative duration counts in the first bin.
        bins = np.maximum(np.searchsorted(DURATION_EDGES_S, durations, side="right") - 1, 0)
        counts = np.bincount(bins, minlength=len(DURATION_EDGES_S))
        self.durations = [n + int(more) for n, more in zip(self.durations, counts, strict=True)]

    def add_errors(self, stages: pa.Array) -> None:
        """Error rows, by their stage column: counted in Arrow, a Python object per distinct stage only."""
        for entry in pc.value_counts(stages).to_pylist():
            self.add_error(entry["values"], entry["counts"])

    def add_error(self, stage: object, rows: int = 1) -> None:
        self.errors += rows
        self.error_stages[str(stage or "?")] += rows

    def add_chunks(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """Chunk figures of a batch of newest finished records (columns flagged, config_hash, chunks), in
        Arrow. Returns (flagged [rows] bool: by its column or a failed chunk, failed chunks [rows])."""
        rows = batch.num_rows
        self.config_hashes.update(h for h in pc.unique(batch.column("config_hash")).to_pylist() if h)
        flags = pc.fill_null(batch.column("flagged"), False).to_numpy(zero_copy_only=False).astype(bool)
        chunks = batch.column("chunks")
        failed = np.zeros(rows, np.int64)
        if not pa.types.is_null(chunks.type):  # a file written without chunks reads as a null column
            failed = self._add_chunk_list(chunks, rows)
        flagged = flags | (failed > 0)
        self.flagged += int(np.count_nonzero(flagged))
        return flagged, failed

    def _add_chunk_list(self, chunks: pa.Array, rows: int) -> np.ndarray:
        flat = pc.list_flatten(chunks)  # [chunks of the batch]
        parent = pc.list_parent_indices(chunks).to_numpy()  # chunk -> row
        gates = pc.struct_field(flat, "failed")
        named = pc.fill_null(pc.list_value_length(gates), 0).to_numpy() > 0
        refused = pc.fill_null(pc.equal(pc.struct_field(flat, "passed"), False), False).to_numpy(zero_copy_only=False)
        is_failed = named | refused  # as review.chunks.is_failed
        self.chunks += len(flat)
        self.failed_chunks += int(np.count_nonzero(is_failed))
        names = pc.list_flatten(gates).to_pylist()  # only failed chunks name gates: few
        owners = parent[pc.list_parent_indices(gates).to_numpy()]
        self.gate_chunks.update(names)
        self.gate_rows.update(gate for gate, _ in set(zip(names, owners.tolist(), strict=True)))
        measures = pc.struct_field(flat, "measures")
        # A map as a list of {key, value}: flattening a list honours slicing (MapArray.keys would not).
        entries = pa.list_(pa.struct([measures.type.key_field, measures.type.item_field]))
        pairs = pc.list_flatten(measures.cast(entries))  # [measure entries]
        keys, values = pc.struct_field(pairs, "key"), pc.struct_field(pairs, "value")
        for name, spread in self.measures.items():
            picked = pc.filter(values, pc.equal(keys, name)).to_numpy(zero_copy_only=False)
            spread.add(np.asarray(picked, dtype=np.float64))
        return np.bincount(parent[is_failed], minlength=rows)


def dataset_html(stats: DatasetStats) -> str:
    """The summary table, the gates that flagged rows, row durations and the listening checks' spread."""
    stages = ", ".join(f"{html.escape(str(s))}: {n}" for s, n in sorted(stats.error_stages.items()))
    facts = [
        ("rows", f"{stats.rows}"),
        ("finished", f"{stats.finished} ({stats.finished - stats.flagged} ok, {stats.flagged} flagged)"),
        ("error rows", f"{stats.errors}" + (f" ({stages})" if stages else "")),
        ("redone rows", f"{stats.redone} ({stats.superseded} older record(s) superseded)"),
        ("audio", f"{stats.audio_s / SECONDS_PER_HOUR:.3f} h ({stats.audio_s:.1f} s)"),
        ("chunks", f"{stats.chunks} ({stats.failed_chunks} failed their gates)"),
        ("configs", f"{len(stats.config_hashes)} distinct config_hash"),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    return f"<table class='summary dataset'>{cells}</table>{_gates_html(stats)}{_durations_html(stats)}" + (
        _spread_html(stats)
    )


def _gates_html(stats: DatasetStats) -> str:
    if not stats.gate_chunks:
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(gate)}</th><td>{stats.gate_rows[gate]}</td><td>{n}</td></tr>"
        for gate, n in sorted(stats.gate_chunks.items(), key=lambda kv: (-stats.gate_rows[kv[0]], kv[0]))
    )
    return f"<table class='summary gates'><tr><th>failed gate</th><th>rows</th><th>chunks</th></tr>{rows}</table>"


def _durations_html(stats: DatasetStats) -> str:
    if not stats.finished:
        return ""
    top = max(stats.durations)
    labels = [f"{a}–{b} s" for a, b in zip(DURATION_EDGES_S, DURATION_EDGES_S[1:], strict=False)]
    labels.append(f"≥ {DURATION_EDGES_S[-1]} s")
    rows = "".join(
        f"<tr><th>{label}</th><td>{n}</td>"
        f"<td><span class=bar style='width:{round(BAR_PX * n / top)}px'></span></td></tr>"
        for label, n in zip(labels, stats.durations, strict=True)
        if n
    )
    return f"<table class='summary durations'><tr><th>row duration</th><th>rows</th><th></th></tr>{rows}</table>"


def _spread_html(stats: DatasetStats) -> str:
    shown = [(name, note, stats.measures[name]) for name, note in DISTRIBUTED if stats.measures[name].count]
    if not shown:
        return ""
    heads = "".join(f"<th>{label}</th>" for label in ("min", "p10", "median", "p90", "max"))
    rows = "".join(
        f"<tr><th>{name} <span class=muted>({note})</span></th><td>{spread.count}"
        + (f" <span class=muted>(p10–p90 of a {spread.size} sample)</span>" if spread.sampled else "")
        + "</td>"
        + "".join(f"<td>{q:.3f}</td>" for q in spread.quantiles())
        + "</tr>"
        for name, note, spread in shown
    )
    return (
        f"<table class='summary spread'><tr><th>per chunk (kept attempt)</th><th>chunks</th>{heads}</tr>{rows}</table>"
    )
