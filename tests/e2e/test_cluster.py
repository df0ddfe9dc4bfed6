"""`barkpipe run` as a Ray job on two Ray nodes (1 CPU each): weights, manifest and output on S3.

Every row once, both nodes' engines used (node_id in metadata), and each node's weights cache
filled once: a second run downloads nothing. moto always; the Ceph RGW too when CI runs it.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from support.clusterjob import (
    NODE_CPUS, RunSetup, barkpipe_job, cache_files, make_manifest,
)  # fmt: skip
from support.faults import accounting_problems, read_outcome
from support.ray_cluster import TwoNodeCluster

pytestmark = pytest.mark.slow

ROWS = 12


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with TwoNodeCluster(tmp_path_factory.mktemp("cluster"), num_cpus=NODE_CPUS) as c:
        yield c


@pytest.fixture(scope="module", params=["moto", pytest.param("ceph", marks=pytest.mark.ceph)])
def setup(request, tmp_path_factory) -> RunSetup:
    s3 = request.getfixturevalue(f"{request.param}_s3")
    if request.param == "moto":
        # moto accepts any credentials: unique ones make a leak findable by plain search.
        s3 = dataclasses.replace(s3, key=f"AKIA{uuid.uuid4().hex[:16].upper()}", secret=f"secret-{uuid.uuid4().hex}")
    return RunSetup.on(s3, tmp_path_factory.mktemp(f"setup-{request.param}"))


def test_two_nodes_every_row_once_each_cache_filled_once(cluster, setup):
    ids = make_manifest(setup, "m1", ROWS)
    nodes = {cluster.node_id("head"), cluster.node_id("worker")}
    assert None not in nodes, "both nodes should be ALIVE before the run"

    status, logs = barkpipe_job(cluster, setup, "m1", "r1")
    assert status == "SUCCEEDED", f"job {status}; last log lines:\n{logs[-4000:]}"
    assert "Connecting to existing Ray cluster" in logs  # the job used the two-node cluster

    fs = setup.s3.filesystem()
    out = f"{setup.bucket}/runs/r1"
    assert accounting_problems(fs, out, ids) == []
    outcome = read_outcome(fs, out)
    assert sorted(outcome.meta_ids) == sorted(ids), f"error rows: {outcome.error_ids}"
    made_by = {r["node_id"] for r in outcome.metadata}
    assert made_by == nodes, f"rows made on {made_by}, the cluster's nodes are {nodes}"

    # Each node fetched the S3 weights into its own cache, once: the same files, complete.
    before = {name: cache_files(path) for name, path in cluster.caches.items()}
    for name, files in before.items():
        weights = {rel for rel in files if not rel.endswith((".lock", ".json"))}
        assert weights, f"{name}'s cache {cluster.caches[name]} is empty"
    assert set(before["head"]) == set(before["worker"])

    # A second run (a new output, 2 rows: both engine actors still start) downloads nothing.
    ids2 = make_manifest(setup, "m2", 2)
    status, logs = barkpipe_job(cluster, setup, "m2", "r2")
    assert status == "SUCCEEDED", f"job {status}; last log lines:\n{logs[-4000:]}"
    assert accounting_problems(fs, f"{setup.bucket}/runs/r2", ids2) == []
    after = {name: cache_files(path) for name, path in cluster.caches.items()}
    assert after == before, "the second run changed a node's weights cache"

