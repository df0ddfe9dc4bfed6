"""Private Ray clusters on this machine for `ray job submit` tests: a head alone, or a head and a worker node.

Every node is `ray start --block` in a session of its own, stopped (or killed, as a fault) by
ending that session's processes, never with `ray stop`, which ends every Ray cluster on the box.
"""

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

from support.faults import kill_pids, session_pids, wait_gone
from support.s3servers import free_ports, http_answers

# `ray start --head` with the dashboard takes 3-5 s here; a loaded CI box is slower.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
# A node that `ray start` reports up still needs a moment to show in the GCS's node table.
NODE_LISTED_TIMEOUT_S = 60.0
# The custom resource that tells the nodes of a test cluster apart (ray start has no --node-name).
NODE_TAG = "barkpipe_test_node_"
# A task or actor that waits this long for a node with room for it will wait forever: on a fixed
# test cluster nothing frees its resources (a busy 2-core box assigns a placeable task in seconds).
STALL_S = 75.0


class StalledRun(TimeoutError):
    """A job's tasks or actors waited STALL_S for resources that no node of the cluster has free."""


def unplaceable(address: str) -> list[str]:
    """'name {resources}' of each task and actor of the cluster still waiting for a node."""
    from ray.util.state import list_actors, list_tasks

    waiting = [f"task {t.name} {t.required_resources}" for t in
               list_tasks(address=address, filters=[("state", "=", "PENDING_NODE_ASSIGNMENT")], detail=True,
                          limit=1000, raise_on_missing_output=False)]  # fmt: skip
    waiting += [f"actor {a.class_name} {a.required_resources}" for a in
                list_actors(address=address, filters=[("state", "=", "PENDING_CREATION")], detail=True,
                            limit=1000, raise_on_missing_output=False)]  # fmt: skip
    return sorted(waiting)
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


class RayNode:
    """One `ray start --block` in a session of its own; `stop()` ends it, `kill()` is a node failure.

    Why not `ray stop`: it kills every Ray process this user owns, including an in-process
    `ray.init()` cluster that other tests of the same pytest session still use. `--block`
    makes `ray start` own its daemons and take them down on SIGTERM. A private --temp-dir
    keeps its address file (and session logs) away from other clusters on this machine.
    """

    # Every port a node listens on, chosen here: Ray's own random choice of a port not named
    # can collide with a named one ("trying to use a port number ... used by other components").
    PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                  "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")  # fmt: skip

    def __init__(self, name: str, num_cpus: int, object_store_mb: int, env: dict[str, str] | None,
                 avoid_ports: frozenset[int] = frozenset()):  # fmt: skip
        self.name = name  # also the node's custom resource NODE_TAG + name, see node_id()
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.env = env or {}  # what this node's workers see, e.g. secrets or BARKPIPE_CACHE
        # Short path: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix=f"ray{name[:1]}-", dir="/tmp")
        self.ports = dict(zip(self.PORT_FLAGS, free_ports(len(self.PORT_FLAGS), avoid_ports), strict=True))
        self._proc: subprocess.Popen | None = None
        self._log_path = Path(self.temp_dir) / "ray-start.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return self._log_path.exists() and b"Ray runtime started" in self._log_path.read_bytes()

    def _common_args(self) -> list[str]:
        return ["--block", f"--num-cpus={self.num_cpus}", "--num-gpus=0", f"--temp-dir={self.temp_dir}",
                f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats",
                f"--resources={json.dumps({NODE_TAG + self.name: 1})}",
                *(f"{flag}={port}" for flag, port in self.ports.items())]  # fmt: skip

    def start(self):
        with open(self._log_path, "ab") as log:
            # No drain on SIGTERM: it waits up to 30 s for Serve proxies this cluster never has.
            env = ray_env(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", **self.env)
            self._proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self._ready():
                if self._proc.poll() is not None:
                    raise RuntimeError(f"ray start ({self.name}) exited with {self._proc.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ray start ({self.name}) not up within {START_TIMEOUT_S:.0f}s:\n{self.log_tail()}")
                time.sleep(0.25)
        except BaseException:
            self.stop()  # start() failing leaves nothing behind: no processes, no temp dir
            raise
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def processes(self) -> set[int]:
        """Every process of this node: `ray start`, its daemons, the raylet's workers (each in its own group)."""
        return session_pids(self._proc.pid) if self._proc is not None else set()

    def kill(self) -> set[int]:
        """A node failure: SIGKILL the raylet, every daemon and every worker of this node at once.

        Returns the pids killed. The temp dir stays (its logs tell what happened); start() again
        to bring a node of the same name back (it joins with a new node id).
        """
        pids = self.processes()
        kill_pids(pids, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        left = wait_gone(pids)
        assert not left, f"node {self.name}: processes {sorted(left)} outlived SIGKILL"
        return pids

    def stop(self) -> None:
        """SIGTERM `ray start --block` (it stops its daemons), then SIGKILL whatever of its session is left."""
        if self.running:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        if self._proc is not None:
            # Whatever outlived the graceful stop in this node's session (never other clusters).
            kill_pids(session_pids(self._proc.pid), signal.SIGKILL)
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log_tail(self, n: int = 30) -> str:
        if not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-n:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RayHead(RayNode):
    """`ray start --head` with the dashboard on 127.0.0.1 (the job API) on private ports."""

    def __init__(self, num_cpus: int = 2, object_store_mb: int = 512, env: dict[str, str] | None = None,
                 name: str = "head"):  # fmt: skip
        super().__init__(name, num_cpus, object_store_mb, env)
        self.dashboard_port, self.gcs_port, self.client_port = free_ports(3, frozenset(self.ports.values()))
        self.address = f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def all_ports(self) -> frozenset[int]:
        """Every port this head listens on: a worker node on the same machine keeps off them."""
        return frozenset([*self.ports.values(), self.dashboard_port, self.gcs_port, self.client_port])

    @property
    def gcs_address(self) -> str:
        """What `ray start --address` takes: the GCS on the address Ray gives this machine (not 127.0.0.1)."""
        import ray._private.services

        return f"{ray._private.services.get_node_ip_address()}:{self.gcs_port}"

    def _command(self) -> list[str]:
        return [*ray_cli(), "start", "--head", f"--port={self.gcs_port}", "--include-dashboard=true",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={self.client_port}", *self._common_args()]  # fmt: skip

    def _ready(self) -> bool:
        # The dashboard (the job API) starts before the raylet and answers even when the raylet
        # then fails, so wait for both it and the line `ray start` prints once every daemon is up.
        return super()._ready() and http_answers(f"{self.address}/api/version")

    def start(self) -> "RayHead":
        missing = dashboard_missing()
        if missing:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            raise RuntimeError(f"`ray job submit` needs the dashboard, which needs ray[default] "
                               f"({missing}); install the project with `make test` or "
                               f"pip install 'ray[default]'")
        return super().start()

    def submit(self, entrypoint: list[str], working_dir: Path | None, timeout_s: float,
               env_vars: dict[str, str] | None = None, job_id: str | None = None) -> tuple[str, str]:
        """`ray job submit` (the CLI, as jobs/submit.sh does) and wait; returns (final status, job logs)."""
        job_id = self.submit_no_wait(entrypoint, working_dir, env_vars, job_id)
        return self.wait_job(job_id, timeout_s)

    def submit_no_wait(self, entrypoint: list[str], working_dir: Path | None, env_vars: dict[str, str] | None = None,
                       job_id: str | None = None) -> str:  # fmt: skip
        """`ray job submit --no-wait`; returns the submission id (wait_job() waits for it).

        working_dir None: no upload; the entrypoint then names what it needs by absolute path.
        """
        job_id = job_id or f"barkpipe-test-{uuid.uuid4().hex[:8]}"
        runtime_env = {"env_vars": env_vars or {}}
        upload = []
        if working_dir is not None:
            runtime_env["excludes"] = WORKING_DIR_EXCLUDES
            upload = ["--working-dir", str(working_dir)]
        # --no-wait and polling: the blocking CLI spends ~5 s closing its log tail and has no timeout.
        cmd = [*ray_cli(), "job", "submit", "--address", self.address, "--no-wait",
               "--submission-id", job_id, *upload,
               "--runtime-env-json", json.dumps(runtime_env), "--", *entrypoint]
        subprocess.run(cmd, env=ray_env(), check=True, timeout=120, capture_output=True)
        return job_id

    def job_status(self, job_id: str) -> str:
        from ray.job_submission import JobSubmissionClient

        return str(JobSubmissionClient(self.address).get_job_status(job_id).value)

    def wait_job(self, job_id: str, timeout_s: float, stall_s: float | None = STALL_S) -> tuple[str, str]:
        """Wait for the job to end; (status, logs). Raises StalledRun when the same work has waited
        stall_s for a node (stall_s None: never), TimeoutError after timeout_s; both stop the job."""
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(self.address)
        terminal = {"SUCCEEDED", "FAILED", "STOPPED"}
        deadline = time.monotonic() + timeout_s
        stuck, since = [], time.monotonic()
        while (status := str(client.get_job_status(job_id).value)) not in terminal:
            now = time.monotonic()
            if stall_s is not None and status == "RUNNING":
                waiting = unplaceable(self.address)
                if not waiting or waiting != stuck:
                    stuck, since = waiting, now
                elif now - since > stall_s:
                    client.stop_job(job_id)
                    raise StalledRun(f"job {job_id}: waited {stall_s:.0f}s for resources no node has free: "
                                     f"{stuck}; cluster {self.resources()}")
            if now > deadline:
                client.stop_job(job_id)
                logs = client.get_job_logs(job_id)
                raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f}s; "
                                   f"logs:\n{logs[-4000:]}")
            time.sleep(0.5 if stall_s is None else 2.0)
        return status, client.get_job_logs(job_id)

    def stop_job(self, job_id: str) -> None:
        from ray.job_submission import JobSubmissionClient

        JobSubmissionClient(self.address).stop_job(job_id)

    def resources(self) -> str:
        """The CPUs of each ALIVE node, for messages."""
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.address, filters=[("state", "=", "ALIVE")], limit=1000,
                           raise_on_missing_output=False)  # fmt: skip
        return ", ".join(f"{n.node_id[:8]}: {n.resources_total.get('CPU', 0):g} CPU" for n in nodes)


class RayWorker(RayNode):
    """`ray start --address <head>`: a second node on this machine, with its own temp dir and environment."""

    def __init__(self, head: RayHead, num_cpus: int = 1, object_store_mb: int = 512,
                 env: dict[str, str] | None = None, name: str = "worker"):  # fmt: skip
        super().__init__(name, num_cpus, object_store_mb, env, avoid_ports=head.all_ports)
        self.head = head

    def _command(self) -> list[str]:
        return [*ray_cli(), "start", f"--address={self.head.gcs_address}", *self._common_args()]


class TwoNodeCluster:
    """A head and one worker node, 1 CPU each by default, each with its own BARKPIPE_CACHE.

    Small nodes on purpose: a stage that asks for more than it needs cannot be placed. The
    nodes are told apart by a custom resource (see node_id()); node_ids change when a node
    is killed and started again.
    """

    def __init__(self, root: Path, num_cpus: int = 1, env: dict[str, str] | None = None):
        self.caches = {"head": root / "cache-head", "worker": root / "cache-worker"}
        for path in self.caches.values():
            path.mkdir(parents=True, exist_ok=True)
        env = env or {}
        self.head = RayHead(num_cpus=num_cpus, env={**env, "BARKPIPE_CACHE": str(self.caches["head"])})
        self.worker = RayWorker(self.head, num_cpus=num_cpus,
                                env={**env, "BARKPIPE_CACHE": str(self.caches["worker"])})
        self._killed: list[RayNode] = []  # workers killed by a test: their temp dirs go at stop()

    @property
    def address(self) -> str:
        return self.head.address

    @property
    def nodes(self) -> dict[str, RayNode]:
        return {"head": self.head, "worker": self.worker}

    def start(self) -> "TwoNodeCluster":
        self.head.start()
        try:
            self.start_worker()
        except BaseException:
            self.head.stop()
            raise
        return self

    def start_worker(self) -> str:
        """Start the worker node (again, after a kill) and wait until the cluster lists it ALIVE."""
        if not self.worker.running:
            if self.worker._proc is not None:  # killed: a fresh node in a fresh temp dir
                self._killed.append(self.worker)
                self.worker = RayWorker(self.head, num_cpus=self.worker.num_cpus, env=self.worker.env)
            self.worker.start()
        deadline = time.monotonic() + NODE_LISTED_TIMEOUT_S
        while (node := self.node_id("worker")) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker node not ALIVE in the cluster after {NODE_LISTED_TIMEOUT_S:.0f}s:\n"
                                   f"{self.worker.log_tail()}")
            time.sleep(0.5)
        return node

    def node_id(self, name: str) -> str | None:
        """The Ray node id of the ALIVE node called name ('head' or 'worker'), or None."""
        from ray.util.state import list_nodes

        for node in list_nodes(address=self.address, filters=[("state", "=", "ALIVE")], limit=1000,
                              raise_on_missing_output=False):
            if NODE_TAG + name in (node.resources_total or {}):
                return node.node_id
        return None

    def kill_worker(self) -> set[int]:
        return self.worker.kill()

    def stop(self) -> None:
        try:
            for node in (self.worker, *self._killed):
                node.stop()
        finally:
            self.head.stop()

    def __enter__(self) -> "TwoNodeCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
