"""Fixtures for engine tests: tiny random weights in both layouts, and engines on them."""

import pytest

from bark_model import BarkEngine
from bark_model.random_weights import make_random_weights


@pytest.fixture(scope="session")
def tiny_suno(tmp_path_factory):
    return make_random_weights(tmp_path_factory.mktemp("tiny_suno"), size="tiny", layout="suno", seed=0)


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    return make_random_weights(tmp_path_factory.mktemp("tiny_hf"), size="tiny", layout="hf", seed=0)


@pytest.fixture(scope="session")
def engine(tiny_suno):
    return BarkEngine.from_dir(tiny_suno, device="cpu", precision="fp32")
