"""The scheduled-job files in jobs/ load, agree with each other and hold no credentials."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from pipeline.batch.config import load_config

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
    proc = subprocess.run(["bash", str(JOBS / "submit.sh")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode != 0
    assert "RAY_ADDRESS" in proc.stderr


def test_submit_script_is_executable():
    assert os.access(JOBS / "submit.sh", os.X_OK)
