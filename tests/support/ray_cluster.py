"""A private `ray start --head` cluster on this machine for `ray job submit` tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from support.s3servers import free_port, http_answers

# `ray start --head` with the dashboard takes 3-5 s here; a loaded CI box is slower.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
# Never upload these with --working-dir: the upload limit is ~100 MB and they are not code.
WORKING_DIR_EXCLUDES = [".git", ".venv", "weights", "out", "bench/out", "**/__pycache__",
                        "*.egg-info", ".pytest_cache", ".whl", ".devcarry"]


def ray_env(**extra: str) -> dict[str, str]:
    """Environment for the ray CLI and the cluster: no token auth, no usage stats, the venv first."""
    env = dict(os.environ)
    # Ray 2.60 turns token auth on when ~/.ray/auth_token exists, and the job CLI then fails
    # unless the client opts in too; loopback tests opt out on both sides.
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    # The job entrypoint (`barkpipe`, `python`) is resolved on ray start's PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # RAY_ADDRESS from the caller would send the CLI to some other cluster.
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def ray_cli() -> list[str]:
    """The ray CLI of this interpreter (the venv's), so the cluster runs the same Ray."""
    script = Path(sys.executable).with_name("ray")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def dashboard_missing() -> str | None:
    """Why this interpreter cannot run the Ray dashboard (ray[default] missing), or None."""
    import ray._private.utils

    return ray._private.utils.get_dashboard_dependency_error()


class RayHead:
    """`ray start --head --block` in its own session, stopped by signalling that process only.

    Why not `ray stop`: it kills every Ray process this user owns, including an in-process
    `ray.init()` cluster that other tests of the same pytest session still use. `--block`
    makes `ray start` own its daemons and take them down on SIGTERM. A private --temp-dir
    keeps its address file away from a plain `ray.init()`, which would otherwise attach to it.
    """

    def __init__(self, num_cpus: int = 2, object_store_mb: int = 512, env: dict[str, str] | None = None):
        self.num_cpus = num_cpus
        self.env = env or {}  # what the cluster's nodes see, e.g. secrets a runtime_env references
        self.object_store_mb = object_store_mb
        # Short path: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self._proc: subprocess.Popen | None = None
        self._log_path = Path(self.temp_dir) / "ray-start.log"

    def start(self) -> "RayHead":
        missing = dashboard_missing()
        if missing:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            raise RuntimeError(f"`ray job submit` needs the dashboard, which needs ray[default] "
                               f"({missing}); install the project with `make test` or "
                               f"pip install 'ray[default]'")
        ports = {"--port": free_port(),
                 "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(),
                 "--runtime-env-agent-port": free_port(), "--metrics-export-port": free_port()}
        cmd = [*ray_cli(), "start", "--head", "--block", f"--num-cpus={self.num_cpus}",
               "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={self.dashboard_port}", f"--temp-dir={self.temp_dir}",
               f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats",
               *(f"{flag}={port}" for flag, port in ports.items())]
        with open(self._log_path, "wb") as log:
            # No drain on SIGTERM: it waits up to 30 s for Serve proxies this cluster never has.
            env = ray_env(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", **self.env)
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # start() failing leaves nothing behind: no processes, no temp dir
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        # The dashboard (the job API) starts before the raylet and answers even when the raylet
        # then fails, so also wait for the line `ray start` prints once every daemon is up.
        while not (self._log_path.exists() and b"Ray runtime started" in self._log_path.read_bytes()
                   and http_answers(f"{self.address}/api/version")):
            if self._proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray dashboard did not answer on {self.address} within "
                                   f"{START_TIMEOUT_S:.0f}s:\n{self.log_tail()}")
            time.sleep(0.25)

    def submit(self, entrypoint: list[str], working_dir: Path, timeout_s: float,
               env_vars: dict[str, str] | None = None) -> tuple[str, str]:
        """`ray job submit` (the CLI, as jobs/submit.sh does); returns (final status, job logs)."""
        from ray.job_submission import JobSubmissionClient

        job_id = f"barkpipe-test-{uuid.uuid4().hex[:8]}"
        runtime_env = {"excludes": WORKING_DIR_EXCLUDES, "env_vars": env_vars or {}}
        # --no-wait and polling below: the blocking CLI spends ~5 s closing its log tail and
        # has no timeout of its own.
        cmd = [*ray_cli(), "job", "submit", "--address", self.address, "--no-wait",
               "--submission-id", job_id, "--working-dir", str(working_dir),
               "--runtime-env-json", json.dumps(runtime_env), "--", *entrypoint]
        subprocess.run(cmd, env=ray_env(), check=True, timeout=120, capture_output=True)
        client = JobSubmissionClient(self.address)
        terminal = {"SUCCEEDED", "FAILED", "STOPPED"}
        deadline = time.monotonic() + timeout_s
        while (status := str(client.get_job_status(job_id).value)) not in terminal:
            if time.monotonic() > deadline:
                client.stop_job(job_id)
                logs = client.get_job_logs(job_id)
                raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f}s; "
                                   f"logs:\n{logs[-4000:]}")
            time.sleep(0.5)
        return status, client.get_job_logs(job_id)

    def log_tail(self, n: int = 30) -> str:
        if not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        """SIGTERM `ray start --block` (it stops its daemons), then SIGKILL its process group."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        if self._proc is not None:
            # Whatever outlived the graceful stop in this head's session (never other clusters).
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "RayHead":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
