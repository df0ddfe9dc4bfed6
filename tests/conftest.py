"""Shared fixtures: S3 servers (moto, Ceph RGW) on 127.0.0.1."""

import pytest

from support.s3servers import CEPH_ENV, MotoServer, S3Endpoint, ceph_from_env


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
