"""The whole pipeline (`barkpipe run`, local Ray, tiny random weights) from S3 to S3, on moto and Ceph."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300  # one tiny run takes ~25 s here (mostly Ray start-up); a loaded box is slower
# Rows that succeed, one that fails in the actor (empty text) and a duplicated id (manifest error).
MANIFEST = [
    {"id": "hello", "text": "Hello there, this goes to object storage.", "seed": 1},
    {"id": "second", "text": "A second short row.", "seed": 2},
    {"id": "dir/slash", "text": "An id with a slash must not make a folder.", "seed": 3},
    {"id": "empty", "text": "", "seed": 4},
    {"id": "twice", "text": "First copy.", "seed": 5},
    {"id": "twice", "text": "Second copy.", "seed": 6},
]
GOOD_IDS = {"hello", "second", "dir/slash"}

pytestmark = pytest.mark.slow


def barkpipe_cli() -> list[str]:
    """The barkpipe entry point of this interpreter (the venv's), as a subprocess command."""
    script = Path(sys.executable).with_name("barkpipe")
    if not script.exists():
        pytest.fail(f"{script} not found: install the project (pip install -e .) into this interpreter")
    return [str(script)]


def run_barkpipe(config: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*barkpipe_cli(), "run", str(config)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO
    )
    assert proc.returncode == 0, f"barkpipe run exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def listing(s3, prefix: str) -> dict:
    """key -> ETag of every object under prefix."""
    return {path: info.get("ETag") for path, info in s3.filesystem().find(prefix, detail=True).items()}


@dataclasses.dataclass
class S3Run:
    """A finished run against one S3 server."""

    s3: object
    config: Path
    out: str  # bucket/prefix of output.path
    proc: subprocess.CompletedProcess
    objects: dict  # key -> ETag after the run

    def read(self, rel: str) -> bytes:
        return self.s3.filesystem().cat(f"{self.out}/{rel}")

    def table(self, folder: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = [k for k in self.objects if k.startswith(f"{self.out}/{folder}/")]
        assert keys, f"no {folder}/*.parquet under s3://{self.out}"
        return pa.concat_tables([pq.read_table(io.BytesIO(self.s3.filesystem().cat(k))) for k in keys])


@pytest.fixture(scope="module", params=["moto", pytest.param("ceph", marks=pytest.mark.ceph)])
def s3_run(request, tmp_path_factory, tiny_weights) -> S3Run:
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = request.getfixturevalue(f"{request.param}_s3")
    if request.param == "moto":
        # moto accepts any credentials: unique ones make a leak findable by plain search.
        s3 = dataclasses.replace(s3, key=f"AKIA{uuid.uuid4().hex[:16].upper()}", secret=f"secret-{uuid.uuid4().hex}")
    bucket = s3.make_bucket()
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(MANIFEST), buf)
    s3.filesystem().pipe(f"{bucket}/manifests/m1.parquet", buf.getvalue())

    config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    config["input"] = {"path": f"s3://{bucket}/manifests/", "storage_options": s3.storage_options}
    config["output"].update(path=f"s3://{bucket}/runs/r1", storage_options=s3.storage_options, format="flac")
    config["model"]["weights"] = str(tiny_weights)
    config["generation"]["max_duration"] = 1.0  # random weights never stop; keep rows short
    path = tmp_path_factory.mktemp(f"cfg-{request.param}") / "run.yaml"
    path.write_text(yaml.safe_dump(config))

    out = f"{bucket}/runs/r1"
    proc = run_barkpipe(path)
    return S3Run(s3, path, out, proc, listing(s3, out))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from bark_model.random_weights import make_random_weights

    return make_random_weights(tmp_path_factory.mktemp("tiny_weights"), size="tiny", layout="suno")


def test_summary_accounts_for_every_row(s3_run):
    summary = json.loads(s3_run.read("summary.json"))
    assert summary["input_rows"] == len(MANIFEST)
    assert summary["ok"] == len(GOOD_IDS)
    assert summary["errors"] == 3 and summary["manifest_errors"] == 2
    assert summary["accounted"] is True and summary["missing_ids"] == []


def test_audio_objects_match_metadata(s3_run):
    import soundfile as sf

    meta = s3_run.table("metadata").to_pylist()
    assert {r["id"] for r in meta} == GOOD_IDS
    audio_keys = {k for k in s3_run.objects if k.startswith(f"{s3_run.out}/audio/")}
    assert audio_keys == {f"{s3_run.out}/{r['audio_path']}" for r in meta}
    for row in meta:
        assert row["audio_path"].startswith("audio/") and row["audio_path"].count("/") == 2
        data, rate = sf.read(io.BytesIO(s3_run.read(row["audio_path"])))
        assert sf.info(io.BytesIO(s3_run.read(row["audio_path"]))).format == "FLAC"
        assert rate == row["sample_rate"] == 24_000
        assert len(data) > 0 and abs(len(data) / rate - row["duration_s"]) < 0.01


def test_errors_name_the_failed_rows(s3_run):
    errors = s3_run.table("errors").to_pylist()
    # errors/ is a view too: the id given twice is one row, however many times the manifest repeats it
    assert sorted(r["id"] for r in errors) == ["empty", "twice"]
    stages = {r["id"]: r["stage"] for r in errors}
    assert stages["twice"] == "manifest"
    assert all(r["error"] for r in errors)


def test_rerun_resumes_without_rewriting(s3_run):
    run_barkpipe(s3_run.config)
    after = listing(s3_run.s3, s3_run.out)
    summary = json.loads(s3_run.read("summary.json"))
    assert summary["this_run"]["rows"] == 0
    # Committed rows, the failed one included (an empty text stays empty), are not run again.
    assert summary["this_run"]["skipped_already_done"] == len(GOOD_IDS) + 1
    assert summary["ok"] == len(GOOD_IDS) and summary["accounted"] is True
    # Same keys with the same contents: only summary.json (this run's timings) is rewritten.
    results = {k: v for k, v in s3_run.objects.items() if not k.endswith("summary.json")}
    assert after.keys() == s3_run.objects.keys()
    assert {k: after[k] for k in results} == results


# On moto only: it takes unique credentials, while Ceph's are the fixed testing/testing.
@pytest.mark.parametrize("s3_run", ["moto"], indirect=True)
def test_credentials_never_written_or_printed(s3_run):
    import pyarrow.parquet as pq

    fs = s3_run.s3.filesystem()
    written = {}
    for key in s3_run.objects:
        if key.endswith(".json"):
            written[key] = fs.cat(key).decode()
        elif key.endswith(".parquet"):
            # Decoded, since compression could hide a string from a byte search.
            table = pq.read_table(io.BytesIO(fs.cat(key)))
            written[key] = json.dumps(table.to_pylist(), default=str) + str(table.schema.metadata)
    assert any(k.endswith("summary.json") for k in written)
    assert any("/metadata/" in k for k in written) and any("/errors/" in k for k in written)
    # The options did reach the run (it used this endpoint) and the summary keeps them, redacted.
    config = json.loads(s3_run.read("summary.json"))["config"]
    assert config["output"]["storage_options"]["client_kwargs"] == {"endpoint_url": s3_run.s3.endpoint_url}
    for secret in (s3_run.s3.key, s3_run.s3.secret):
        for key, text in written.items():
            assert secret not in text, f"credential found in s3://{key}"
        assert secret not in s3_run.proc.stdout + s3_run.proc.stderr, "credential printed by barkpipe run"
