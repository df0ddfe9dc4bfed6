"""Load the official `bark==0.1.5` package against local random weights (test oracle only).

bark imports `encodec`, which imports `torchaudio` at import time; torchaudio can't load with
our torch, and neither package touches it on the token path, so an empty stand-in module is
registered first. transformers is imported before the stand-in so its own torchaudio probe
sees the real (installed, unloadable) package rather than a module without a spec.
"""

import importlib.machinery
import sys
import types

import pytest
import torch


def import_official():
    try:
        from transformers import BertTokenizer
    except ImportError:
        pytest.skip("transformers is not installed (test-only dependency: pip install -e '.[test]')")
    if "torchaudio" not in sys.modules:
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    try:
        import bark.generation as generation
    except ImportError as err:
        pytest.skip(f"the official bark package is not importable here ({err})")
    return generation, BertTokenizer


def load_official_models(weights_dir):
    """Fill bark's module-level model registry from our random Suno-layout files."""
    generation, BertTokenizer = import_official()
    from bark_model.checkpoints import _safe_numpy_globals

    vocab = str(weights_dir / "vocab.txt")

    class LocalBertTokenizer(BertTokenizer):
        # The official loader asks the Hub for "bert-base-multilingual-cased": serve the same
        # vocabulary from the weights directory instead.
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return BertTokenizer(vocab, do_lower_case=False)

    generation.BertTokenizer = LocalBertTokenizer
    models = {}
    with torch.serialization.safe_globals(_safe_numpy_globals()):
        for role in ("text", "coarse", "fine"):
            models[role] = generation._load_model(str(weights_dir / f"{role}.pt"), "cpu", model_type=role)
    generation.models.update(models)
    return generation
