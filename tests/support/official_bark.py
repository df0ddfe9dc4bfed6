"""The official `bark==0.1.5` package as a test oracle, loaded from our random Suno-layout weights.

The loading itself lives in bench/systems.py (`load_official`), which the benchmark also uses on
machines without pytest: an empty `torchaudio` stand-in where the real one can't load (encodec
imports it at import time; neither package touches it on the token path), the tokenizer served
from the weights directory, numpy scalars allowed in the checkpoints, EnCodec from our file.
"""

import importlib.util
from pathlib import Path

import pytest
import torch


def load_official_models(weights_dir):
    for package in ("transformers", "bark", "encodec", "funcy"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (test-only oracle; `make setup` installs it)")
    from bench.systems import load_official

    return load_official(Path(weights_dir), torch.device("cpu"))
