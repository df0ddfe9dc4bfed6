"""`barkpipe run` submitted to a test cluster with weights, manifest and output on one S3 server."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from support.s3servers import S3Endpoint

# A run of ~16 rows takes ~40 s on two 1-CPU nodes of this 2-core box (more when it is loaded).
JOB_TIMEOUT_S = 420
# Seconds of audio per chunk: random weights never stop, so this sets each row's cost (~2-4 s of
# CPU a row here), long enough for a fault to land mid-run, short enough for a quick suite.
MAX_DURATION_S = 3.0
TEXT = "Row {i} of the cluster test says a short sentence."
# 1 CPU a node (issue 8: small nodes, so no stage may ask for more than it needs). Set
# BARKPIPE_TEST_NODE_CPUS=3 to see how the faults go on nodes where the stages do fit.
NODE_CPUS = int(os.environ.get("BARKPIPE_TEST_NODE_CPUS", "1"))


@dataclass(frozen=True)
class RunSetup:
    """One S3 server and bucket holding the tiny weights (weights/tiny/), manifests and runs."""

    s3: S3Endpoint
    bucket: str
    config_dir: Path

    @classmethod
    def on(cls, s3: S3Endpoint, tmp: Path) -> "RunSetup":
        from bark_model.random_weights import make_random_weights

        bucket = s3.make_bucket()
        local = make_random_weights(tmp / "tiny", size="tiny", layout="suno")
        fs = s3.filesystem()
        for path in sorted(local.rglob("*")):
            if path.is_file():
                fs.put_file(str(path), f"{bucket}/weights/tiny/{path.relative_to(local).as_posix()}")
        return cls(s3, bucket, tmp)

    @property
    def weights_url(self) -> str:
        return f"s3://{self.bucket}/weights/tiny"

    def out(self, name: str) -> str:
        """bucket/runs/name: the output of run `name`, as the test's filesystem addresses it."""
        return f"{self.bucket}/runs/{name}"


def make_manifest(setup: RunSetup, name: str, rows: int) -> list[str]:
    """manifests/name/m.parquet with `rows` one-sentence rows; returns their ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"{name}-row-{i:02d}" for i in range(rows)]
    table = pa.table({"id": ids, "text": [TEXT.format(i=i) for i in range(rows)], "seed": list(range(rows))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    setup.s3.filesystem().pipe(f"{setup.bucket}/manifests/{name}/m.parquet", buf.getvalue())
    return ids


def run_config(setup: RunSetup, manifest: str, out: str, endpoint_url: str | None = None, **compute) -> dict:
    """The job's config: everything on S3; output (and weights) via endpoint_url when given (a proxy)."""
    options = setup.s3.storage_options
    via = {**options, "client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else options
    return {
        "input": {"path": f"s3://{setup.bucket}/manifests/{manifest}/", "storage_options": options},
        "output": {"path": f"s3://{setup.bucket}/runs/{out}", "storage_options": via, "format": "flac"},
        "model": {"weights": setup.weights_url, "storage_options": via, "device": "cpu", "precision": "fp32"},
        "generation": {"max_duration": MAX_DURATION_S},
        "segment": {"target_seconds": 6.0, "max_seconds": 8.0},
        # 0.6 CPU an actor on 1-CPU nodes: two engine actors never fit on one node, so both nodes work.
        "compute": {"actors": 2, "cpus_per_actor": 0.6, "gpus_per_actor": 0, "batch_size": 4,
                    "max_restarts": 2, "max_task_retries": 2, **compute},
    }


def write_config(setup: RunSetup, config: dict, name: str) -> Path:
    path = setup.config_dir / f"{name}.yaml"
    # Through JSON: one dict used twice (storage_options) would be dumped as a YAML alias, which
    # barkpipe refuses.
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config))))
    return path


def entrypoint(config: Path) -> list[str]:
    # An absolute config path: the job runs on this machine; no working_dir upload is needed.
    return ["barkpipe", "run", str(config)]


def barkpipe_job(cluster, setup: RunSetup, manifest: str, out: str, **compute) -> tuple[str, str]:
    """Submit `barkpipe run` over manifests/manifest -> runs/out and wait; (status, job logs)."""
    config = write_config(setup, run_config(setup, manifest, out, **compute), out)
    return cluster.head.submit(entrypoint(config), working_dir=None, timeout_s=JOB_TIMEOUT_S)


def cache_files(root: Path) -> dict[str, tuple[int, int, int]]:
    """rel path -> (size, mtime_ns, inode) of every file under a node's BARKPIPE_CACHE."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found

