"""Faults survived, nothing lost or doubled: `barkpipe run` jobs on two 1-CPU Ray nodes, S3 on moto.

Each test starts a run, waits until some rows are committed (mid-run), injects one fault and
checks the outcome: every input id exactly once in metadata or errors, summary.json accounted,
each metadata row's audio file present with the duration it records.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import time
import uuid

import pyarrow.parquet as pq
import pytest
from support.clusterjob import (
    JOB_TIMEOUT_S,
    NODE_CPUS,
    RunSetup,
    entrypoint,
    make_manifest,
    run_config,
    write_config,
)  # fmt: skip
from support.faults import (
    OutageProxy,
    accounting_problems,
    alive_actors,
    find_process,
    kill_actor,
    read_outcome,
    wait_for,
)  # fmt: skip
from support.ray_cluster import STALL_S, StalledRun, TwoNodeCluster, unplaceable

from pipeline.output import layout
from pipeline.output.layout import ERRORS, METADATA


def cluster_run(test):
    """A test that runs jobs on the two-node cluster (slow); a run that cannot be placed fails with StalledRun."""
    return pytest.mark.slow(test)


ROWS = 16
MID_RUN_TIMEOUT_S = 240  # the first committed rows; Ray start-up and weight fetches come first
OUTAGE_S = 60.0  # longer than s3fs and botocore ride out on their own: storage.retry (output.retry_s) must


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with TwoNodeCluster(tmp_path_factory.mktemp("cluster"), num_cpus=NODE_CPUS) as c:
        yield c


@pytest.fixture(scope="module")
def setup(moto_s3, tmp_path_factory) -> RunSetup:
    s3 = dataclasses.replace(moto_s3, key=f"AKIA{uuid.uuid4().hex[:16].upper()}", secret=f"secret-{uuid.uuid4().hex}")
    return RunSetup.on(s3, tmp_path_factory.mktemp("faults"))


@pytest.fixture
def both_nodes(cluster) -> TwoNodeCluster:
    """The cluster with its worker node up (a test before may have killed it)."""
    cluster.start_worker()
    return cluster


def committed_ids(setup: RunSetup, out: str) -> list[str]:
    """Ids committed so far: the published view, and the journal a running (or killed) run commits into."""
    fs, root = setup.s3.filesystem(), setup.out(out)
    outcome = read_outcome(fs, root)
    journal = [r["id"] for kind in (METADATA, ERRORS) for p in sorted(fs.glob(f"{root}/{layout.journal(kind)}/*.parquet"))
               for r in pq.read_table(io.BytesIO(fs.cat_file(p)), columns=["id"]).to_pylist()]
    return outcome.meta_ids + outcome.error_ids + journal


def start_run(cluster, setup: RunSetup, name: str, endpoint_url: str | None = None,
              output: dict | None = None, **compute) -> tuple[str, list[str], str]:  # fmt: skip
    """Submit a run of ROWS rows (manifest and output both called name); (job id, input ids, config path)."""
    ids = make_manifest(setup, name, ROWS)
    config = run_config(setup, name, name, endpoint_url, **compute)
    config["output"].update(output or {})
    path = write_config(setup, config, name)
    return cluster.head.submit_no_wait(entrypoint(path), working_dir=None), ids, str(path)


def wait_mid_run(cluster, setup: RunSetup, job: str, name: str) -> int:
    """Block until the run has committed some rows but not all; returns how many it has."""

    stuck = {"what": [], "since": time.monotonic()}

    def some() -> int:
        status = cluster.head.job_status(job)
        assert status in ("PENDING", "RUNNING"), f"job {status} before the fault:\n{job_logs(cluster, job)}"
        done = len(committed_ids(setup, name))
        waiting = unplaceable(cluster.address) if not done else []
        if not waiting or waiting != stuck["what"]:
            stuck.update(what=waiting, since=time.monotonic())
        elif time.monotonic() - stuck["since"] > STALL_S:
            cluster.head.stop_job(job)
            raise StalledRun(f"{name}: no row after waiting {STALL_S:.0f}s for resources no node has free: "
                             f"{waiting}; cluster {cluster.head.resources()}")
        return done

    done = wait_for(some, MID_RUN_TIMEOUT_S, f"the first committed rows of {name}", every_s=2.0)
    assert done < ROWS, f"all {ROWS} rows were done before the fault: make rows slower (MAX_DURATION_S)"
    return done


def job_logs(cluster, job: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.address).get_job_logs(job)[-4000:]


def assert_accounted(setup: RunSetup, name: str, ids: list[str], logs: str = "") -> None:
    """Every id exactly once, audio matching its metadata, and the S3 secret in no output file or job log."""
    fs = setup.s3.filesystem()
    problems = accounting_problems(fs, setup.out(name), ids)
    assert problems == [], "\n".join(problems)
    secret = setup.s3.secret.encode()
    leaked = [path for path in fs.find(setup.out(name)) if secret in fs.cat_file(path)]
    assert leaked == [], f"the S3 secret is written in {leaked}"
    assert setup.s3.secret not in logs, "the S3 secret is in the job's log"


@cluster_run
def test_engine_actor_sigkill_mid_run(both_nodes, setup):
    job, ids, _ = start_run(both_nodes, setup, "actor-kill")
    before = wait_mid_run(both_nodes, setup, job, "actor-kill")
    victim = kill_actor(both_nodes.address, "EngineStage")
    status, logs = both_nodes.head.wait_job(job, JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"after SIGKILL of engine actor pid {victim.pid} ({before}/{ROWS} rows done): " \
                                  f"job {status}:\n{logs[-4000:]}"
    assert_accounted(setup, "actor-kill", ids, logs)


@cluster_run
def test_engine_actor_sigstopped_mid_run(both_nodes, setup):
    # SIGSTOP freezes every thread of the actor, its watchdog too: only the driver can notice (no heartbeat).
    job, ids, _ = start_run(both_nodes, setup, "actor-stop", frozen_after_s=20)
    before = wait_mid_run(both_nodes, setup, job, "actor-stop")
    victim = alive_actors(both_nodes.address, "EngineStage")[0]
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        status, logs = both_nodes.head.wait_job(job, JOB_TIMEOUT_S)
    finally:
        try:
            os.kill(victim.pid, signal.SIGKILL)  # still there only if the run never killed it
        except ProcessLookupError:
            pass
    assert status == "SUCCEEDED", f"after SIGSTOP of engine actor pid {victim.pid} ({before}/{ROWS} rows done): " \
                                  f"job {status}:\n{logs[-4000:]}"
    assert "sent no heartbeat" in logs, "the run finished without noticing the frozen actor"
    assert_accounted(setup, "actor-stop", ids, logs)


@cluster_run
def test_s3_unreachable_for_60s_mid_run(both_nodes, setup):
    with OutageProxy(setup.s3.endpoint_url) as proxy:
        # Output and weights go through the proxy: the outage hits commits, lease and fetches alike.
        job, ids, _ = start_run(both_nodes, setup, "outage", endpoint_url=proxy.url)
        before = wait_mid_run(both_nodes, setup, job, "outage")
        proxy.outage(OUTAGE_S).join()
        status, logs = both_nodes.head.wait_job(job, JOB_TIMEOUT_S)
        assert proxy.connections > 0, "the run never went through the proxy"
    assert status == "SUCCEEDED", f"after {OUTAGE_S:.0f}s without S3 ({before}/{ROWS} rows done): job {status}:\n" \
                                  f"{logs[-4000:]}"
    assert_accounted(setup, "outage", ids, logs)


@cluster_run
def test_driver_killed_then_resumed(both_nodes, setup):
    # A short lease: the killed driver cannot release it, and the resumed run waits it out.
    job, ids, config = start_run(both_nodes, setup, "driver-kill", output={"lease_ttl_s": 30, "lease_wait_s": 90})
    before = wait_mid_run(both_nodes, setup, job, "driver-kill")
    driver = find_process(f"barkpipe run {config}")
    assert driver is not None, "the job's `barkpipe run` process was not found"
    os.kill(driver, signal.SIGKILL)
    status, _ = both_nodes.head.wait_job(job, JOB_TIMEOUT_S)
    assert status == "FAILED"
    partial = committed_ids(setup, "driver-kill")
    assert len(partial) == len(set(partial)) < ROWS, f"{before} rows before the kill, {len(partial)} after"

    status, logs = both_nodes.head.submit(entrypoint(config), working_dir=None, timeout_s=JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"resumed run: job {status}:\n{logs[-4000:]}"
    assert_accounted(setup, "driver-kill", ids, logs)


@cluster_run
def test_worker_node_killed_mid_run(both_nodes, setup):
    head_node = both_nodes.node_id("head")
    job, ids, _ = start_run(both_nodes, setup, "node-kill")
    before = wait_mid_run(both_nodes, setup, job, "node-kill")
    killed = both_nodes.kill_worker()
    status, logs = both_nodes.head.wait_job(job, JOB_TIMEOUT_S)
    assert status == "SUCCEEDED", f"after killing the worker node ({len(killed)} processes; {before}/{ROWS} rows " \
                                  f"done): job {status}:\n{logs[-4000:]}"
    assert_accounted(setup, "node-kill", ids, logs)
    # What was still to do after the kill was finished by the head node's engine.
    made_by = {r["node_id"] for r in read_outcome(setup.s3.filesystem(), setup.out("node-kill")).metadata}
    assert head_node in made_by


# ---------------------------------------------------------------- the fault tools themselves (fast)


def test_outage_proxy_refuses_while_paused_and_forwards_after():
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(100))

    threading.Thread(target=echo, daemon=True).start()
    try:
        with OutageProxy(f"http://127.0.0.1:{server.getsockname()[1]}") as proxy:

            def ask() -> bytes:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as c:
                    c.sendall(b"ping")
                    return c.recv(100)

            assert ask() == b"ping"
            outage = proxy.outage(0.5)
            with pytest.raises(ConnectionRefusedError):
                ask()
            outage.join()
            assert ask() == b"ping" and proxy.connections == 2
    finally:
        server.close()


def test_session_pids_finds_children_in_their_own_process_groups():
    import subprocess
    import sys

    from support.faults import kill_pids, session_pids, wait_gone

    # A parent in a new session starting a child in a process group of its own, as the raylet does.
    code = ("import os, subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], process_group=0); "
            "time.sleep(60)")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        def both() -> set[int] | None:
            pids = session_pids(parent.pid)
            return pids if len(pids) == 2 else None

        pids = wait_for(both, 10, "the child", every_s=0.1)
        child = (pids - {parent.pid}).pop()
        assert os.getpgid(child) == child != os.getpgid(parent.pid)
        kill_pids(pids)
        parent.wait(timeout=10)
        assert wait_gone(pids) == set()
    finally:
        parent.kill()
