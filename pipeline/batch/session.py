"""The run's Ray session: join the cluster in RAY_ADDRESS or start a local one, keep Ray's console
lines off the terminal, and end an actor by id (the frozen-actor breaker's kill)."""

from __future__ import annotations

import os
from contextlib import contextmanager


def kill_actor(actor_id: str, restart: bool = True) -> bool:
    """Force-kill a Ray actor by id, letting Ray restart it (its task is retried) or not; False if it was dead."""
    import ray
    from ray._private.state import actors

    if actors(actor_id=actor_id).get("State", "DEAD") == "DEAD":  # scaled down, or an earlier attempt's pool
        return False
    # Ray Data's actors are unnamed, so there is no handle to ray.kill(); this is what ray.kill calls.
    core_worker = ray._private.worker.global_worker.core_worker  # type: ignore[attr-defined]  # set by connect()
    core_worker.kill_actor(ray.ActorID.from_hex(actor_id), not restart)
    return True


def ensure_ray(verbose: bool = False, dashboard: bool = False) -> bool:
    """Connect to Ray (the cluster in RAY_ADDRESS / ray job submit) or start a local one; True if started.

    dashboard: give a local cluster Ray's dashboard, on 127.0.0.1 (`barkpipe run --dashboard`).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    with _quiet_core_logs(not verbose):
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address="auto", log_to_driver=verbose)
        else:
            from pipeline.batch.localray import start_local_ray

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
    import logging
    import warnings

    import ray.data  # noqa: F401  (sets up the "ray.data" handlers)

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
