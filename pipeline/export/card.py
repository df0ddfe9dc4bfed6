"""The dataset card DIR/README.md: Hub YAML (features, splits, configs), then how the audio was made."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

SECONDS_PER_HOUR = 3600.0


@dataclass
class Provenance:
    """What the rows themselves say about how they were made (collected while they stream by)."""

    models: set = field(default_factory=set)  # (model, model_checksum) pairs
    config_hashes: set = field(default_factory=set)
    audio_s: dict = field(default_factory=dict)  # split -> seconds

    def add(self, split: str, row: dict) -> None:
        self.models.add((row.get("model") or "unknown", row.get("model_checksum") or "unknown"))
        if row.get("config_hash"):
            self.config_hashes.add(row["config_hash"])
        self.audio_s[split] = self.audio_s.get(split, 0.0) + float(row.get("duration_s") or 0.0)


def weights_kind(weights: str | None) -> str:
    """A reader's name for where the weights came from, without the path itself (it may be private)."""
    if not weights:
        return "not recorded"
    if weights.startswith("hf://"):
        return f"the Hugging Face Hub ({weights})"
    if "://" in weights:
        return f"an object store ({weights.split('://', 1)[0]}://)"
    return "a local folder"


def seeds_rule(seed) -> str:
    rule = (
        f"rows without a `seed` column value use {seed}"
        if seed is not None
        else "rows without a `seed` column value get a seed derived from their id (blake2b)"
    )
    return (
        f"{rule}; chunk 0 uses the row seed and chunk k > 0 a seed derived from (row seed, k); "
        "the `seed` column holds each row's seed, `chunks[].seed` each chunk's kept attempt"
    )


def card_text(
    fmt: str,
    features_yaml: list | None,
    splits: dict[str, dict],
    prov: Provenance,
    summary: dict | None,
    selection: dict,
    left_out: dict[str, int],
) -> str:
    """README.md's text. splits: name -> {"rows", "files", "bytes"}; features_yaml: None for webdataset."""
    header: dict = {}
    if features_yaml is not None:
        header["dataset_info"] = {
            "features": features_yaml,
            "splits": [{"name": s, "num_bytes": v["bytes"], "num_examples": v["rows"]} for s, v in splits.items()],
            "download_size": sum(v["bytes"] for v in splits.values()),
            "dataset_size": sum(v["bytes"] for v in splits.values()),
        }
        header["configs"] = [
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}
        ]
    header["task_categories"] = ["text-to-speech"]
    header["tags"] = ["barkpipe", "bark", "synthetic-speech"]
    front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + _prose(fmt, splits, prov, summary, selection, left_out)


def _prose(fmt: str, splits: dict, prov: Provenance, summary: dict | None, selection: dict, left_out: dict) -> str:
    config = (summary or {}).get("config") or {}
    model, generation = config.get("model") or {}, config.get("generation") or {}
    total_s = sum(prov.audio_s.values())
    lines = [
        "# Synthetic speech made with barkpipe",
        "",
        "Speech synthesized with [Bark](https://github.com/suno-ai/bark) by `barkpipe run`, exported by "
        f"`barkpipe export --format {fmt}`. Every finished row appears once, in its newest take.",
        "",
        "| split | rows | hours | files |",
        "|---|---|---|---|",
    ]
    for name, v in splits.items():
        hours = prov.audio_s.get(name, 0.0) / SECONDS_PER_HOUR
        lines.append(f"| {name} | {v['rows']} | {hours:.3f} | {v['files']} |")
    lines += ["", f"Total: {sum(v['rows'] for v in splits.values())} rows, {total_s / SECONDS_PER_HOUR:.3f} hours.", ""]
    lines += ["## How it was made", ""]
    content = (summary or {}).get("content_hash")
    digests = ", ".join(f"`{h}`" for h in sorted(prov.config_hashes)) or "not recorded"
    models = ", ".join(f"`{m}` (checksum `{c}`)" for m, c in sorted(prov.models)) or "not recorded"
    lines += [
        f"- Model: {models}; weights from {weights_kind(model.get('weights'))}.",
        f"- Precision: {model.get('precision', 'not recorded')}.",
        f"- Seeds: {seeds_rule(generation.get('seed'))}.",
        f"- Config digest (`config_hash` of the rows): {digests}"
        + (f"; the last run's content hash: `{content}`" if content else "")
        + ".",
        f"- Rows chosen: flagged rows {'included' if selection['include_flagged'] else 'left out'}"
        + (f"; every chunk within {', '.join(selection['min_quality'])}" if selection["min_quality"] else "")
        + "; splits by sha256 of the id: "
        + ", ".join(f"{k} {v:g}" for k, v in selection["splits"].items())
        + ".",
        "- Left out: " + ", ".join(f"{n} {why}" for why, n in left_out.items()) + ".",
        "",
        "## Columns",
        "",
        "`id`, `text` (the row's text), the audio file (as written by the run), `duration_s`, `sample_rate`, "
        "`language`, `voice`, `seed`, `flagged`, `revision`, `model`, `config_hash`, `chunks` (one entry per "
        "chunk Bark spoke: its text, start_s/end_s in the audio, seed, attempts, passed, failed gates, transcript "
        "and the measures wer, cer, speaker_similarity, duration_ratio, rms_db, longest_silence_s, "
        "clipped_fraction; null where a check did not run), then the manifest's own columns.",
        "",
    ]
    if fmt == "hf":
        lines += [
            "```python",
            "from datasets import Audio, load_dataset",
            "ds = load_dataset('parquet', data_dir='.')  # or the Hub repo",
            "ds = ds.cast_column('audio', Audio(decode=False))  # raw file bytes; decode with soundfile",
            "```",
            "",
        ]
    else:
        lines += ["Each sample of a `<split>-NNNNNN.tar` is `<key>.<audio format>` plus `<key>.json`.", ""]
    return "\n".join(lines)
