"""The output as a consumer without barkpipe reads it: after runs, redos, retries and a killed run, pandas on
metadata/ and errors/ finds each id once, in one of them, and history/ keeps older revisions with their audio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.batch.run import run
from pipeline.config import validate_config
from pipeline.output.layout import ERRORS, HISTORY, METADATA, journal

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("voice", pa.string()), ("seed", pa.int64())])


def manifest_rows(n: int) -> list[dict]:
    rows = [{"id": f"v{i}", "text": f"View row {i} speaks.", "voice": None, "seed": i} for i in range(n)]
    return rows + [{"id": "nobody", "text": "Unknown voice.", "voice": "no_such_voice", "seed": None}]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


def config(manifest: Path, out: Path, weights: Path, **generation) -> dict:
    return {
        "input": {"path": str(manifest)},
        "output": {"path": str(out), "format": "flac"},
        "model": {"weights": str(weights), "device": "cpu"},
        "generation": {"max_duration": 1.0, **generation},
        "compute": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 4, "window_rows": 2},
    }


def check_consumer_view(out: Path, manifest: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """pandas alone: each manifest id once in metadata/ or errors/, never both; audio that plays at the
    row's duration; every history row's audio resolves too. Returns (metadata, history metadata)."""
    meta = pd.read_parquet(out / METADATA)
    errors = pd.read_parquet(out / ERRORS)
    assert meta["id"].is_unique and errors["id"].is_unique, (meta["id"].tolist(), errors["id"].tolist())
    assert not set(meta["id"]) & set(errors["id"])
    assert set(meta["id"]) | set(errors["id"]) == {r["id"] for r in manifest}
    past = pd.read_parquet(out / HISTORY / METADATA) if (out / HISTORY / METADATA).exists() else meta.iloc[:0]
    for row in [*meta.to_dict("records"), *past.to_dict("records")]:
        info = sf.info(out / row["audio_path"])  # relative to the output root
        assert abs(info.frames / info.samplerate - row["duration_s"]) < 0.01
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "final" and summary["accounted"] and summary["view"][METADATA] == len(meta)
    return meta, past


def test_each_id_once_after_runs_redos_retries_and_a_kill(ray_local, tiny_weights, tmp_path):
    rows = manifest_rows(6)
    manifest = write_manifest(tmp_path / "m.parquet", rows)
    out = tmp_path / "out"
    cfg = validate_config(config(manifest, out, tiny_weights))
    run(cfg, progress=False)
    meta, past = check_consumer_view(out, rows)
    assert len(meta) == 6 and past.empty and list(pd.read_parquet(out / ERRORS)["id"]) == ["nobody"]

    rows[1]["text"] = "View row 1 was edited."  # an edited row and a --redo
    write_manifest(manifest, rows)
    run(cfg, progress=False, redo={"v2"})
    meta, past = check_consumer_view(out, rows)
    revisions = dict(zip(meta["id"], meta["revision"], strict=True))
    assert revisions["v1"] == revisions["v2"] == 1 and revisions["v0"] == 0
    assert sorted(zip(past["id"], past["revision"], strict=True)) == [("v1", 0), ("v2", 0)]
    assert meta.set_index("id").loc["v1", "text"] == "View row 1 was edited."
    assert all(p.startswith(f"{HISTORY}/") for p in past["audio_path"])

    rows[-1]["voice"] = None  # the fixed row: --retry-errors writes it again, ok now
    write_manifest(manifest, rows)
    run(cfg, progress=False, retry_errors=True)
    meta, past = check_consumer_view(out, rows)
    assert "nobody" in set(meta["id"]) and pd.read_parquet(out / ERRORS).empty
    assert list(pd.read_parquet(out / HISTORY / ERRORS)["id"]) == ["nobody"]

    rows += [{"id": f"late{i}", "text": f"Late row {i} says more words.", "voice": None, "seed": i} for i in range(8)]
    write_manifest(manifest, rows)
    data = config(manifest, out, tiny_weights, max_duration=4.0)
    kill_after_a_journal_part(data, out)
    assert json.loads((out / "summary.json").read_text())["state"] == "running"
    before = pd.read_parquet(out / METADATA)  # the killed run's rows wait in the journal, unseen
    assert before["id"].is_unique and not set(before["id"]) & {r["id"] for r in rows if r["id"].startswith("late")}
    run(validate_config(data), progress=False)
    meta, _ = check_consumer_view(out, rows)
    assert len(meta) == len(rows) and not list((out / journal(METADATA)).glob("*.parquet"))
    view = json.loads((out / ".barkpipe-view.json").read_text())
    assert len(view["files"][METADATA]) == 1  # 15 rows: one compacted file, not a part per window


def kill_after_a_journal_part(cfg_dict: dict, out: Path, timeout_s: float = 180.0) -> None:
    """Run in a child process (its own local Ray) and SIGKILL its process group once a part is committed."""
    code = (
        "import json, sys; from pipeline.config import validate_config; from pipeline.batch.run import run; "
        "run(validate_config(json.loads(sys.argv[1])), progress=False)"
    )
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)
    log = out.parent / "child.log"
    with open(log, "wb") as sink:
        child = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg_dict)], cwd=REPO, env=env,
                                 start_new_session=True, stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while not list((out / journal(METADATA)).glob("part-*.parquet")):
            assert child.poll() is None, f"child ended early: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "no part committed in time"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
