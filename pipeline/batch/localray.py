"""Starting a local Ray cluster that only this machine can reach, with token authentication on.

Ray 2.60 reads its auth mode from RAY_AUTH_MODE and the token from RAY_AUTH_TOKEN (or
~/.ray/auth_token); the driver's environment is inherited by every process it starts. A fresh
random token per run means nothing is written to the home folder and a token seen in one run's
logs opens nothing later. Product code never sets RAY_AUTH_MODE=disabled.

Measured on Ray 2.60 (tests/pipeline/test_localray.py): with this, another process that attaches
without the token (or with auth off) is refused. Ray's own gRPC servers (GCS, raylet, object
manager) still listen on every interface: Ray has no setting to bind them to loopback, and
`_node_ip_address="127.0.0.1"` is turned back into the machine's address by ray.init
(services.resolve_ip_for_localhost), so the token is what keeps others out; the dashboard, which
would bind where told, is kept on 127.0.0.1 (and off by default).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping

LOOPBACK = "127.0.0.1"


def local_ray_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment entries to set before a local ray.init(): token auth on, with a token.

    An explicit RAY_AUTH_MODE=token with a token already given (env or token file) is kept; a
    caller's RAY_AUTH_MODE=disabled is replaced (the product never runs a local cluster open).
    """
    environ = os.environ if environ is None else environ
    env = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": environ.get("RAY_USAGE_STATS_ENABLED", "0")}
    if not environ.get("RAY_AUTH_TOKEN") and not environ.get("RAY_AUTH_TOKEN_PATH"):
        env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return env


def local_ray_init_kwargs() -> dict:
    """ray.init() arguments for a local cluster: dashboard off (and on 127.0.0.1 if turned on)."""
    return {
        "include_dashboard": False,  # the pipeline never submits jobs to its own local cluster
        "dashboard_host": LOOPBACK,  # in case a caller turns the dashboard on
    }


def start_local_ray(**overrides):
    """Set local_ray_env() in os.environ and start a local cluster; returns ray.init's context."""
    already_imported = "ray" in sys.modules
    os.environ.update(local_ray_env())  # before `import ray`: it reads RAY_AUTH_MODE when first imported
    import ray

    if already_imported:
        # Ray caches its config at import; this is the refresh its own auth setup uses after changing the mode.
        from ray._raylet import Config

        Config.initialize("")
    return ray.init(**(local_ray_init_kwargs() | overrides))
