"""Pipeline fixtures: one local Ray for the session (fake logical GPUs, small object store), tiny weights."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest


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
def tiny_weights(tmp_path_factory) -> Path:
    from bark_model.random_weights import make_random_weights

    return make_random_weights(tmp_path_factory.mktemp("weights") / "tiny", size="tiny", layout="suno")
