"""Ray jobs on a real `ray start --head` cluster: the smoke config, and jobs/submit.sh against S3."""

import dataclasses
import io
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from support.ray_cluster import RayHead, ray_env

REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 300  # a smoke job takes ~25 s here (runtime_env upload + run); a loaded box is slower
SMOKE_MANIFEST = REPO / "examples" / "smoke_manifest.parquet"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from bark_model.random_weights import make_random_weights

    # Outside the working_dir on purpose: weights must never be part of the job upload.
    return make_random_weights(tmp_path_factory.mktemp("tiny_weights"), size="tiny", layout="suno")


@pytest.fixture(scope="module")
def s3(moto_s3):
    # moto accepts any credentials: unique ones make a leak findable by plain search.
    return dataclasses.replace(moto_s3, key=f"AKIA{uuid.uuid4().hex[:16].upper()}", secret=f"secret-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def head(s3):
    # The cluster holds the S3 secrets the way a real one does (from its secret store), under
    # the names jobs/runtime_env.yaml references; job submissions carry none.
    secrets = {
        "BARKPIPE_S3_ACCESS_KEY_ID": s3.key,
        "BARKPIPE_S3_SECRET_ACCESS_KEY": s3.secret,
        "BARKPIPE_S3_ENDPOINT": s3.endpoint_url,
    }
    with RayHead(num_cpus=2, env=secrets) as cluster:
        yield cluster


def _decodes(data: bytes) -> bool:
    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(data))
    return rate == 24_000 and len(audio) > 0


def test_smoke_config_runs_as_a_ray_job(head, tmp_path, tiny_weights):
    import pyarrow.parquet as pq

    manifest = pq.read_table(SMOKE_MANIFEST)
    out = tmp_path / "out"
    # The job runs in the uploaded copy of the repo: the config (code) is read there; every data path
    # is absolute, as a job requires (the next test shows a relative one refused).
    entrypoint = [
        "barkpipe",
        "run",
        "configs/smoke.yaml",
        "--set",
        f"output.path={out}",
        "--set",
        f"model.weights={tiny_weights}",
        "--set",
        f"input.path={SMOKE_MANIFEST}",
    ]
    status, logs = head.submit(entrypoint, working_dir=REPO, timeout_s=JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"job {status}; last log lines:\n{logs[-4000:]}"
    # The job used the cluster it was submitted to, not a Ray of its own.
    assert "Connecting to existing Ray cluster" in logs
    # Ray's own E-line about actor arguments by reference (harmless here) stays off the console.
    assert "constructor arguments in the object store" not in logs

    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_rows"] == manifest.num_rows and summary["accounted"] is True
    assert summary["ok"] == manifest.num_rows and summary["errors"] == 0, summary["this_run"]
    meta = pq.read_table(out / "metadata").to_pylist()
    assert sorted(r["id"] for r in meta) == sorted(manifest.column("id").to_pylist())
    audio = sorted(str(p.relative_to(out)) for p in (out / "audio").rglob("*") if p.is_file())
    assert audio == sorted(r["audio_path"] for r in meta)
    assert all(_decodes((out / r["audio_path"]).read_bytes()) for r in meta)


def test_dataset_job_gets_s3_secrets_from_the_cluster(head, s3, tiny_weights):
    from ray.job_submission import JobSubmissionClient

    bucket = s3.make_bucket()
    fs = s3.filesystem()
    fs.put_file(str(SMOKE_MANIFEST), f"{bucket}/manifests/daily/smoke.parquet")
    # jobs/dataset.yaml as scheduled, pointed at the test bucket and sized for this CPU box.
    overrides = {
        "input.path": f"s3://{bucket}/manifests/daily/",
        "output.path": f"s3://{bucket}/runs/daily",
        "model.weights": str(tiny_weights),
        "model.device": "cpu",
        "model.precision": "fp32",
        "generation.max_duration": "1.0",
        "compute.actors": "1",
        "compute.gpus_per_actor": "0",
        "compute.cpus_per_actor": "0.5",
        "compute.batch_size": "4",
    }
    args = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    # The submitter knows the cluster's address and nothing else: no AWS_* in its environment.
    env = {k: v for k, v in ray_env(RAY_ADDRESS=head.address).items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        ["bash", "jobs/submit.sh", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S
    )
    assert proc.returncode == 0, f"jobs/submit.sh exited {proc.returncode}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"

    summary = json.loads(fs.cat(f"{bucket}/runs/daily/summary.json"))
    assert summary["ok"] == 4 and summary["accounted"] is True
    audio = fs.find(f"{bucket}/runs/daily/audio/")
    assert len(audio) == 4 and all(_decodes(fs.cat(k)) for k in audio)
    # What was submitted holds only ${...} references, so secrets never show in the dashboard.
    jobs = [j for j in JobSubmissionClient(head.address).list_jobs() if "jobs/dataset.yaml" in j.entrypoint]
    env_vars = jobs[0].runtime_env["env_vars"]
    assert env_vars["AWS_SECRET_ACCESS_KEY"] == "${BARKPIPE_S3_SECRET_ACCESS_KEY}"
    assert s3.secret not in json.dumps(jobs[0].runtime_env) + jobs[0].entrypoint
    assert s3.secret not in proc.stdout + proc.stderr


def _upload_files(head) -> set[str]:
    """Every file under the head's unpacked working_dir uploads (Ray keeps them while the cluster runs)."""
    root = Path(head.temp_dir)
    return {str(p.relative_to(root)) for p in root.glob("session_*/runtime_resources/working_dir_files/**/*")
            if p.is_file()}  # fmt: skip


def test_a_job_refuses_a_relative_output_path_and_writes_nothing_in_the_upload(head, tiny_weights):
    before = _upload_files(head)
    # configs/smoke.yaml as README's cluster example runs it: output.path out/smoke is relative.
    entrypoint = [
        "barkpipe",
        "run",
        "configs/smoke.yaml",
        "--set",
        f"model.weights={tiny_weights}",
        "--set",
        f"input.path={SMOKE_MANIFEST}",
    ]
    status, logs = head.submit(entrypoint, working_dir=REPO, timeout_s=JOB_TIMEOUT_S)
    assert status == "FAILED", logs[-4000:]
    errors = [line for line in logs.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "output.path 'out/smoke' is relative" in errors[0], logs[-4000:]
    assert "use an absolute path on the cluster's shared storage or s3://" in errors[0]
    assert "Traceback" not in logs
    written = {f for f in _upload_files(head) - before if "/out/" in f or f.endswith("summary.json")}
    assert not written, written
