"""The suite's one set of fixtures: tiny random weights, engines on them, local Ray, S3 servers, stores, the CLI."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from support.s3servers import CEPH_ENV, MotoServer, S3Endpoint, ceph_from_env


@pytest.fixture(scope="session")
def tiny_suno(tmp_path_factory) -> Path:
    """Tiny random weights in the official (Suno) layout, the one `barkpipe weights make-random` writes."""
    from bark_model.random_weights import make_random_weights

    return make_random_weights(tmp_path_factory.mktemp("tiny_suno"), size="tiny", layout="suno", seed=0)


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> Path:
    """The same tiny model in the transformers (Hub) layout."""
    from bark_model.random_weights import make_random_weights

    return make_random_weights(tmp_path_factory.mktemp("tiny_hf"), size="tiny", layout="hf", seed=0)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Tiny weights for pipeline runs, in a folder of their own (runs may write caches beside them)."""
    from bark_model.random_weights import make_random_weights

    return make_random_weights(tmp_path_factory.mktemp("weights") / "tiny", size="tiny", layout="suno")


@pytest.fixture(scope="session")
def engine(tiny_suno):
    """A CPU fp32 engine on the tiny Suno weights."""
    from bark_model import BarkEngine

    return BarkEngine.from_dir(tiny_suno, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def ray_local():
    """In-process Ray: 4 logical CPUs so actors and read tasks never starve on 2 cores, and 2 logical
    GPUs so the num_gpus scheduling path runs here too (the engine still picks the CPU)."""
    import ray

    # Ray 2.60 enables token auth for a fresh cluster unless told otherwise (see ray-s3-notes §2).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, object_store_memory=512 * 2**20, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    gc.collect()  # actors of a failed run hold their CPUs until collected
    ray.shutdown()


@pytest.fixture(scope="session")
def moto_s3() -> S3Endpoint:
    """A moto S3 server for the whole session; tests isolate themselves with make_bucket()."""
    with MotoServer() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def ceph_s3() -> S3Endpoint:
    """The Ceph RGW that .ci/run starts (scripts/ceph_up.sh); skipped when it is not running."""
    endpoint = ceph_from_env()
    if endpoint is None:
        pytest.skip(f"{CEPH_ENV} is not set: start Ceph with scripts/ceph_up.sh and export "
                    f"{CEPH_ENV}=http://127.0.0.1:7480 (.ci/run does both)")
    return endpoint


@pytest.fixture(params=["local", "moto"])
def store(request, tmp_path):
    """An empty output Store, on a local folder and on a moto S3 bucket: the two places runs write."""
    from pipeline.storage import Store

    if request.param == "local":
        return Store.open(str(tmp_path / "out"))
    endpoint = request.getfixturevalue("moto_s3")
    return Store.open(f"s3://{endpoint.make_bucket()}/out", endpoint.storage_options)


@pytest.fixture
def cli():
    """The real `barkpipe` app under typer's runner: `cli("run", "cfg.yaml")` returns the click Result."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])
