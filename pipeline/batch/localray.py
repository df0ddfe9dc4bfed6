"""Starting a local Ray cluster that only this machine can reach: loopback only, token authentication on.

Ray 2.60 reads its auth mode from RAY_AUTH_MODE and the token from RAY_AUTH_TOKEN (or
~/.ray/auth_token); the driver's environment is inherited by every process it starts. A fresh
random token per run means nothing is written to the home folder and a token seen in one run's
logs opens nothing later. Product code never sets RAY_AUTH_MODE=disabled.

Loopback: every Ray server binds to the node's IP address (the GCS, raylet and object manager gRPC
servers as ::ffff:127.0.0.1, the dashboard agent's gRPC and HTTP, the runtime-env agent) or, for the
Prometheus metrics exporter, to 127.0.0.1 when that address is a loopback one
(dashboard/modules/reporter/reporter_agent.py). ray.init turns `_node_ip_address="127.0.0.1"` back
into the machine's interface address (services.resolve_ip_for_localhost) unless Ray's
single-machine mode is on: ray_constants.ENABLE_RAY_CLUSTER, i.e. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
the mode Ray uses on macOS and Windows. It is read once, when ray is imported, and consulted only
while ray.init picks the address, so start_local_ray() turns it off just around ray.init and leaves
the process (and the environment the daemons inherit) as it was: a later `ray start --address`
or ray.init(address=...) is unaffected. The dashboard stays off; turned on, it binds 127.0.0.1.
Measured on Ray 2.60 with tests/pipeline/batch/test_localray.py: no listening socket of the run's Ray
processes is on 0.0.0.0, :: or the machine's address; the exceptions Ray has no setting for would
be listed in LOOPBACK_EXCEPTIONS (none today).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

LOOPBACK = "127.0.0.1"
# Listening sockets of a local run that Ray offers no way to bind to loopback (see the module
# docstring); tests/pipeline/batch/test_localray.py asserts every other one is on loopback.
LOOPBACK_EXCEPTIONS: tuple[str, ...] = ()


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


def local_ray_init_kwargs(dashboard: bool = False) -> dict:
    """ray.init() arguments for a local cluster: every server on 127.0.0.1, the dashboard off unless asked for."""
    return {
        "_node_ip_address": LOOPBACK,  # kept as 127.0.0.1 by single_machine_mode() around ray.init
        "include_dashboard": dashboard,  # the pipeline never submits jobs to its own local cluster
        "dashboard_host": LOOPBACK,
    }


@contextmanager
def single_machine_mode() -> Iterator[None]:
    """Ray's macOS/Windows single-machine mode for the duration: a 127.0.0.1 node address stays 127.0.0.1."""
    from ray._private import ray_constants

    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if before is None:  # a Ray without the switch: ray.init then checks nothing more
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def start_local_ray(dashboard: bool = False, **overrides):
    """Set local_ray_env() in os.environ and start a loopback-only local cluster; returns ray.init's context."""
    already_imported = "ray" in sys.modules
    os.environ.update(local_ray_env())  # before `import ray`: it reads RAY_AUTH_MODE when first imported
    import ray

    if already_imported:
        # Ray caches its config at import; this is the refresh its own auth setup uses after changing the mode.
        from ray._raylet import Config  # type: ignore[attr-defined]  # Cython module without stubs

        Config.initialize("")
    with single_machine_mode():
        return ray.init(**(local_ray_init_kwargs(dashboard) | overrides))
