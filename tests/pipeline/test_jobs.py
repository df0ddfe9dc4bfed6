"""The scheduled-job files in jobs/ load, agree with each other and hold no credentials."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config

JOBS = Path(__file__).resolve().parents[2] / "jobs"
# A value that only references the environment, e.g. "${BARKPIPE_S3_SECRET_ACCESS_KEY}".
ENV_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+\}$")
SECRET_NAME = re.compile(r"secret|password|token|access_key|key_id", re.IGNORECASE)


def _rayjob() -> dict:
    return yaml.safe_load((JOBS / "rayjob.yaml").read_text())


def _runtime_env() -> dict:
    return yaml.safe_load((JOBS / "runtime_env.yaml").read_text())


def test_dataset_config_loads_and_writes_to_s3():
    config = load_config(JOBS / "dataset.yaml")
    assert config.input.path.startswith("s3://")
    assert config.output.path.startswith("s3://")
    # Credentials come from the environment (runtime_env.yaml), never from the config file.
    for options in (config.input.storage_options, config.output.storage_options):
        assert not [k for k in options if SECRET_NAME.search(k) or k in ("key", "secret")]


def test_rayjob_entrypoint_runs_the_dataset_config():
    argv = shlex.split(_rayjob()["spec"]["entrypoint"])
    assert argv[:2] == ["barkpipe", "run"]
    assert (JOBS.parent / argv[2]).resolve() == JOBS / "dataset.yaml"


def test_runtime_envs_agree_and_reference_secrets_only():
    standalone = _runtime_env()
    embedded = yaml.safe_load(_rayjob()["spec"]["runtimeEnvYAML"])
    assert embedded["env_vars"] == standalone["env_vars"]
    assert set(standalone["excludes"]) <= set(embedded["excludes"])
    for name in (".git", ".venv", "weights"):  # the ~100 MB working_dir upload cap
        assert name in standalone["excludes"]
    secrets = {k: v for k, v in standalone["env_vars"].items() if SECRET_NAME.search(k)}
    assert secrets, "expected the S3 credentials to be passed as env_vars"
    assert all(ENV_REFERENCE.match(v) for v in secrets.values()), secrets


def test_rayjob_pods_get_every_referenced_variable_from_a_secret():
    spec = _rayjob()["spec"]["rayClusterSpec"]
    referenced = {v[2:-1] for v in _runtime_env()["env_vars"].values() if ENV_REFERENCE.match(v)}
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        missing = referenced - set(env)
        assert not missing, f"pod lacks {sorted(missing)}"
        assert all("secretKeyRef" in env[name]["valueFrom"] for name in referenced)


def test_submit_script_requires_ray_address():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(["bash", str(JOBS / "submit.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "RAY_ADDRESS" in proc.stderr


def test_submit_script_is_executable():
    assert os.access(JOBS / "submit.sh", os.X_OK)


# -- a `ray job submit` driver refuses paths into Ray's temporary upload (pipeline/jobenv.py) --

# What Ray's job supervisor sets for an entrypoint submitted with --working-dir (seen on Ray 2.60).
UPLOAD_JOB_ENV = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(
    {"runtime_env": {"working_dir": "gcs://_ray_pkg_0123456789abcdef.zip"}, "metadata": {}})}  # fmt: skip


def _cfg(**paths):
    from pipeline.config import validate_config

    data = {"input": {"path": paths.get("input", "s3://b/in/")}, "output": {"path": paths.get("output", "s3://b/out")},
            "model": {"weights": paths.get("weights", "hf://suno/bark")},
            "generation": {"voice_dirs": paths.get("voice_dirs", [])}}  # fmt: skip
    return validate_config(data)


def test_in_ray_job_only_with_rays_job_variable():
    from pipeline.jobenv import in_ray_job, uploaded_working_dir

    assert not in_ray_job({}) and in_ray_job(UPLOAD_JOB_ENV) and uploaded_working_dir(UPLOAD_JOB_ENV)
    no_upload = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {}, "metadata": {}})}
    assert in_ray_job(no_upload) and not uploaded_working_dir(no_upload)


def test_job_paths_refuse_each_path_into_the_upload_in_one_line(tmp_path):
    from pipeline.jobenv import job_path_problems

    cfg = _cfg(
        output="out/smoke",
        input="examples/m.parquet",
        weights="weights/bark",
        voice_dirs=["/shared/voices", str(tmp_path / "voices")],
    )
    problems = job_path_problems(cfg, UPLOAD_JOB_ENV, cwd=tmp_path)
    keys = [p.split(" ", 1)[0] for p in problems]
    assert keys == ["output.path", "input.path", "model.weights", "generation.voice_dirs[1]"], problems
    assert all(
        "\n" not in p and p.endswith("use an absolute path on the cluster's shared storage or s3://…") for p in problems
    )
    assert f"Ray's temporary copy of --working-dir ({tmp_path})" in problems[0]
    assert job_path_problems(cfg, {}, cwd=tmp_path) == []  # not a job: relative paths are the user's cwd


def test_job_paths_accept_urls_and_absolute_shared_paths(tmp_path):
    from pipeline.jobenv import job_path_problems

    cfg = _cfg(output="/shared/runs/a", input="s3://b/in/", weights="/models/bark", voice_dirs=["/shared/v"])
    assert job_path_problems(cfg, UPLOAD_JOB_ENV, cwd=tmp_path) == []
    assert job_path_problems(_cfg(weights="s3://b/weights"), UPLOAD_JOB_ENV, cwd=tmp_path) == []


def test_validate_under_a_job_names_the_key_and_the_fix_without_a_traceback(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": {"path": "examples/smoke_manifest.parquet"},
                "output": {"path": "out/smoke"},
                "model": {"weights": "weights/tiny"},
            }
        )
    )
    env = {**os.environ, **UPLOAD_JOB_ENV}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("barkpipe")), "validate", str(config)],
        env=env,
        cwd=JOBS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any(e.startswith("error: output.path 'out/smoke' is relative") for e in errors), proc.stderr
    assert "Traceback" not in proc.stderr and "barkpipe weights download" not in proc.stdout + proc.stderr


def test_under_a_job_missing_weights_are_never_to_be_downloaded_into_the_upload(monkeypatch, tmp_path):
    from pipeline.checks import CheckError, check_weights

    missing = tmp_path / "bark"
    with pytest.raises(CheckError) as outside:
        check_weights(missing)
    assert "barkpipe weights download" in str(outside.value)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", UPLOAD_JOB_ENV["RAY_JOB_CONFIG_JSON_ENV_VAR"])
    with pytest.raises(CheckError) as inside:
        check_weights(missing)
    assert "shared storage" in str(inside.value) and "weights download" not in str(inside.value)
