"""A consumer of a barkpipe output with its own tools only (no barkpipe import): each done id once, audio that plays.

argv: OUTPUT HF_EXPORT WDS_EXPORT REDONE_ID. Exits non-zero with the first problem found.
"""

from __future__ import annotations

import glob
import io
import json
import os
import sys

import datasets
import pandas as pd
import soundfile as sf
import webdataset as wds

SAMPLE_RATE = 24_000
TOLERANCE_S = 0.01


def seconds(data: bytes) -> float:
    audio, rate = sf.read(io.BytesIO(data))
    assert rate == SAMPLE_RATE, f"audio at {rate} Hz, not {SAMPLE_RATE}"
    assert len(audio) > 0, "empty audio"
    return len(audio) / rate


def main(output: str, hf: str, webdataset_dir: str, redone: str) -> None:
    summary = json.load(open(os.path.join(output, "summary.json")))
    meta = pd.read_parquet(os.path.join(output, "metadata"))
    assert meta["id"].is_unique, f"metadata/ holds an id twice: {meta['id'][meta['id'].duplicated()].tolist()}"
    assert len(meta) == summary["ok"], f"metadata/ has {len(meta)} rows, summary.json says {summary['ok']} ok"
    assert meta.set_index("id").loc[redone, "revision"] >= 1, f"{redone} was redone but is at revision 0"
    for row in meta.itertuples():
        with open(os.path.join(output, row.audio_path), "rb") as f:
            got = seconds(f.read())
        assert abs(got - row.duration_s) < TOLERANCE_S, f"{row.id}: {row.audio_path} {got:.2f}s, row {row.duration_s}"
    expected = dict(zip(meta["id"], meta["duration_s"], strict=True))

    # datasets 5 decodes audio through torchcodec and FFmpeg's libraries: read the bytes, decode with soundfile.
    loaded = datasets.load_dataset("parquet", data_dir=hf).cast_column("audio", datasets.Audio(decode=False))
    rows = [r for split in loaded.values() for r in split]
    check("hf", {r["id"]: seconds(r["audio"]["bytes"]) for r in rows}, [r["id"] for r in rows], expected)

    shards = sorted(glob.glob(os.path.join(webdataset_dir, "*.tar")))
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    ids = [json.loads(s["json"])["id"] for s in samples]
    audio = {json.loads(s["json"])["id"]: seconds(next(v for k, v in s.items() if k in ("wav", "flac", "mp3", "ogg")))
             for s in samples}  # fmt: skip
    check("webdataset", audio, ids, expected)


def check(name: str, durations: dict, ids: list, expected: dict) -> None:
    assert len(ids) == len(set(ids)), f"{name}: an id twice"
    assert set(ids) == set(expected), f"{name}: ids differ from metadata/: {sorted(set(ids) ^ set(expected))}"
    for row_id, got in durations.items():
        assert abs(got - expected[row_id]) < TOLERANCE_S, f"{name}: {row_id} plays {got:.2f}s, row {expected[row_id]}"
    print(f"{name}: {len(ids)} ids, each once, audio decodes at {SAMPLE_RATE} Hz to its row's duration")


if __name__ == "__main__":
    main(*sys.argv[1:5])
