"""The one door to Ray's session and its private APIs.

It joins the cluster in RAY_ADDRESS or starts a local one that only this machine can reach, keeps
Ray's console lines off the terminal, ends an actor by id, and cuts a dataset into windows with
fractional CPUs.

Each private API below says which public one is missing; nothing else in the project may use them
(tests/project/test_architecture.py).

Local clusters:
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
Measured on Ray 2.60 with tests/pipeline/batch/test_session.py: no listening socket of the run's Ray
processes is on 0.0.0.0, :: or the machine's address; the exceptions Ray has no setting for would
be listed in LOOPBACK_EXCEPTIONS (none today).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

LOOPBACK = "127.0.0.1"
# Listening sockets of a local run that Ray offers no way to bind to loopback (see the module
# docstring); tests/pipeline/batch/test_session.py asserts every other one is on loopback.
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
    # Public API missing: Ray has no setting that keeps a 127.0.0.1 node address as it is.
    from ray._private import ray_constants  # Ray loads at start-up only (about 1 s)

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
    import ray  # after the line above, on purpose

    if already_imported:
        # Public API missing: Ray caches its config at import and offers no refresh; this is the one its
        # own auth setup uses after changing the mode.
        from ray._raylet import Config  # type: ignore[attr-defined]  # Cython module without stubs; as above

        Config.initialize("")
    with single_machine_mode():
        return ray.init(**(local_ray_init_kwargs(dashboard) | overrides))


def kill_actor(actor_id: str, restart: bool = True) -> bool:
    """Force-kill a Ray actor by id, letting Ray restart it (its task is retried) or not; False if it was dead."""
    import ray  # loaded by the driver already; kept out of this module's import time

    # Public API missing: ray.util.state needs the dashboard, which a local run leaves off.
    from ray._private.state import actors  # as above

    if actors(actor_id=actor_id).get("State", "DEAD") == "DEAD":  # scaled down, or an earlier attempt's pool
        return False
    # Public API missing: Ray Data's actors are unnamed, so there is no handle to ray.kill() (a handle
    # held by the driver would also keep a scaled-down actor alive); this is what ray.kill calls.
    core_worker = ray._private.worker.global_worker.core_worker  # type: ignore[attr-defined]  # set by connect()
    core_worker.kill_actor(ray.ActorID.from_hex(actor_id), not restart)
    return True


def ensure_ray(verbose: bool = False, dashboard: bool = False) -> bool:
    """Connect to Ray (the cluster in RAY_ADDRESS / ray job submit) or start a local one; True if started.

    dashboard: give a local cluster Ray's dashboard, on 127.0.0.1 (`barkpipe run --dashboard`).
    """
    import ray  # about 1 s: only a run that executes pays it

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    with _quiet_core_logs(not verbose):
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address="auto", log_to_driver=verbose)
        else:
            # Loopback only, token auth on, dashboard off unless asked for: only this run gets in.
            start_local_ray(dashboard=dashboard, log_to_driver=verbose)
    return True


@contextmanager
def _quiet_core_logs(quiet: bool):
    """Ray's C++ logs at FATAL only for the processes ray.init starts (the driver's core worker and,
    for a local cluster, its own daemons), unless the user set RAY_BACKEND_LOG_LEVEL.

    Ray Data hands every actor its transformer as an object reference, so with max_restarts > 0 the
    driver's core worker prints an E-level "constructor arguments in the object store" line on
    every run (ray-project/ray#53727), harmless here: a restarted actor re-reads a transformer the
    driver still holds. Failures reach the driver as Python exceptions either way; `--verbose`
    keeps Ray's default levels. (Ray says once, at I level, that it took the level from the variable.)
    """
    if not quiet or "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    try:
        yield
    finally:
        os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


def quiet_ray_console() -> None:
    """Keep Ray Data's INFO lines and hints (execution plans, "progress bars disabled", too few
    blocks for the pool) off the terminal, where they break into our progress bar; its log files
    in the Ray session folder still get every line, and `--verbose` shows them all."""
    import ray.data  # noqa: F401  (sets up the "ray.data" handlers; loaded only by a run)

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)
            handler.addFilter(_not_a_retold_task_error)
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)


# Loggers whose ERROR records retell, with an abbreviated stack, an exception the run itself reports
# (as one line for a user's fault, with the traceback for a bug); the log files keep them.
RETELLING_LOGGERS = ("ray.data._internal.execution.streaming_executor_state", "ray.data.exceptions")


def _not_a_retold_task_error(record) -> bool:
    return not record.name.startswith(RETELLING_LOGGERS)


def streaming_repartition(ds, rows: int, num_cpus: float):
    """ds cut into blocks of `rows` rows, each repartition task asking for num_cpus.

    Public API missing: Dataset.repartition(target_num_rows_per_block=) takes no ray_remote_args and
    asks for a whole CPU per task, which never comes on small nodes whose CPUs the actors hold (and
    map_batches(batch_size=) does not cut a block: one big block stays one task). Built here with
    num_cpus it also fuses into the read task before it, so it costs no task of its own.
    """
    from ray.data import Dataset  # the driver has Ray loaded by now

    try:
        from ray.data._internal.logical.interfaces import LogicalPlan  # as above
        from ray.data._internal.logical.operators.map_operator import StreamingRepartition  # as above
    except ImportError:  # another Ray: the public call (a whole CPU per task)
        return ds.repartition(target_num_rows_per_block=rows)
    try:
        op = StreamingRepartition(target_num_rows_per_block=rows, input_dependencies=[ds._logical_plan.dag],
                                  ray_remote_args={"num_cpus": num_cpus})  # fmt: skip
    except TypeError:  # Ray <= 2.54: `input_op` and no ray_remote_args; the public call, as above
        return ds.repartition(target_num_rows_per_block=rows)
    return Dataset._from_parent(ds, LogicalPlan(op, ds.context))
