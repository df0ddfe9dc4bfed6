"""Under `ray job submit` a relative path lands in Ray's temporary copy of --working-dir: refuse it, naming the key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

# What Ray's job supervisor sets in the entrypoint's environment (Ray 2.40-2.60:
# dashboard/modules/job/job_supervisor.py, _get_driver_env_vars): the job's runtime_env and metadata
# as JSON, read back by the driver's ray.init. Nothing else marks a job driver before ray.init
# (ray.get_runtime_context() needs a connected driver), and plain drivers never have it.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
SHARED_FIX = "use an absolute path on the cluster's shared storage or s3://…"
WEIGHTS_JOB_FIX = ("put the weights on the cluster's shared storage and give its absolute path, or use "
                   "model.weights: hf://suno/bark or s3://bucket/prefix (each node downloads them once)")  # fmt: skip


def job_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """The runtime_env/metadata Ray gave this `ray job submit` entrypoint, or None outside a job."""
    environ = os.environ if environ is None else environ
    raw = environ.get(JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:  # still a job: Ray set the variable, whatever its text
        return {}
    return data if isinstance(data, dict) else {}


def in_ray_job(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process is the entrypoint of a job started by `ray job submit` (or the jobs SDK)."""
    return job_config(environ) is not None


def uploaded_working_dir(environ: Mapping[str, str] | None = None) -> bool:
    """True when the job was submitted with a working_dir: its cwd is then Ray's unpacked upload."""
    runtime_env = (job_config(environ) or {}).get("runtime_env") or {}
    return bool(runtime_env.get("working_dir"))


def _where(cwd: Path, upload: bool) -> str:
    if upload:
        return f"inside Ray's temporary copy of --working-dir ({cwd}), which Ray deletes"
    return f"against the job's directory on the head node ({cwd}), not where `ray job submit` ran"


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _path_problem(key: str, path: str, cwd: Path, upload: bool) -> str | None:
    """One line when `path` (a local path of `key`) resolves into the job's cwd; None when it is fine."""
    local = path.removeprefix("file://")
    if not os.path.isabs(local):
        return f"{key} {path!r} is relative, and under `ray job submit` it resolves {_where(cwd, upload)}; {SHARED_FIX}"
    if upload and Path(os.path.normpath(local)).is_relative_to(cwd):
        return f"{key} {path!r} points {_where(cwd, upload)}; {SHARED_FIX}"
    return None


def job_path_problems(cfg, environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> list[str]:
    """One line per config path that a `ray job submit` run would read or write inside its temporary directory.

    output.path and input.path must not be relative (outputs written there vanish with the job; an
    input there is a copy of the submitter's, cut to Ray's ~100 MB upload); local model.weights and
    generation.voice_dirs must not point into the upload (the weights are excluded from it, and the
    hint to download them there would fill a folder Ray deletes). Empty outside a job.
    """
    if not in_ray_job(environ):
        return []
    here = Path(os.path.normpath(os.path.abspath(cwd if cwd is not None else os.getcwd())))
    upload = uploaded_working_dir(environ)
    paths = [("output.path", cfg.output.path), ("input.path", cfg.input.path), ("model.weights", cfg.model.weights)]
    paths += [(f"generation.voice_dirs[{i}]", d) for i, d in enumerate(cfg.generation.voice_dirs)]
    problems = [_path_problem(key, str(path), here, upload) for key, path in paths if _is_local(str(path))]
    return [p for p in problems if p]


def job_weights_fix(environ: Mapping[str, str] | None = None) -> str | None:
    """The hint for missing weights under `ray job submit` (shared storage or a URL), or None outside a job."""
    return WEIGHTS_JOB_FIX if in_ray_job(environ) else None
