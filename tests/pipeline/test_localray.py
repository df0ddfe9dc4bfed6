"""A local Ray cluster started by the product has token auth on: a process without the token cannot attach."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.batch.localray import local_ray_env, local_ray_init_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in a subprocess: it starts (and shuts down) its own cluster, never touching the test session's Ray.
EXPERIMENT = r"""
import os, subprocess, sys
os.environ.pop("RAY_AUTH_MODE", None)
os.environ.pop("RAY_AUTH_TOKEN", None)
from pipeline.batch.localray import start_local_ray
import ray
ctx = start_local_ray(num_cpus=1, object_store_memory=80 * 2**20, log_to_driver=False)
try:
    @ray.remote
    def env():
        return os.environ.get("RAY_AUTH_MODE")
    print("worker-auth-mode", ray.get(env.remote()))
    attach = "import ray; ray.init(address=%r); print('ATTACHED')" % ctx.address_info["gcs_address"]
    for label, change in (("wrong-token", {"RAY_AUTH_TOKEN": "0" * 64}), ("auth-off", {"RAY_AUTH_MODE": "disabled"}),
                          ("right-token", {})):
        child = dict(os.environ, **change)
        if label == "auth-off":
            child.pop("RAY_AUTH_TOKEN")
        out = subprocess.run([sys.executable, "-c", attach], env=child, capture_output=True, text=True, timeout=120)
        print(label, "ATTACHED" in out.stdout)
finally:
    ray.shutdown()
print("token-file", os.path.exists(os.path.expanduser("~/.ray/auth_token")))
"""


def test_env_turns_token_auth_on_and_never_off():
    env = local_ray_env({"RAY_AUTH_MODE": "disabled"})
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 64
    assert local_ray_env({})["RAY_AUTH_TOKEN"] != env["RAY_AUTH_TOKEN"]  # a fresh token per run
    assert "RAY_AUTH_TOKEN" not in local_ray_env({"RAY_AUTH_TOKEN": "given"})
    kwargs = local_ray_init_kwargs()
    assert kwargs["include_dashboard"] is False and kwargs["dashboard_host"] == "127.0.0.1"


@pytest.mark.slow
def test_a_local_cluster_refuses_processes_without_its_token():
    had_token_file = os.path.exists(os.path.expanduser("~/.ray/auth_token"))
    env = dict(os.environ, PYTHONPATH=ROOT, RAY_USAGE_STATS_ENABLED="0")
    out = subprocess.run([sys.executable, "-c", EXPERIMENT], env=env, capture_output=True, text=True,
                         timeout=400, cwd=ROOT)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert out.returncode == 0, out.stderr[-2000:]
    assert lines["worker-auth-mode"] == "token"
    assert lines["wrong-token"] == "False" and lines["auth-off"] == "False" and lines["right-token"] == "True"
    if not had_token_file:
        assert lines["token-file"] == "False"  # the per-run token is never written to ~/.ray
