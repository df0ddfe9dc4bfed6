"""Bark weights from anywhere: a local folder, an fsspec URL or hf://owner/repo, fetched once per node."""

from pipeline.weights.fetch import fetch_weights
from pipeline.weights.source import CACHE_ENV, WeightsError, is_remote, parse_source

__all__ = ["CACHE_ENV", "WeightsError", "fetch_weights", "is_remote", "parse_source"]
