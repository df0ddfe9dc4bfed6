"""barkpipe's Bark engine: pure inference (torch, numpy, tokenizers), usable without Ray."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bark_model.engine import BarkEngine
    from bark_model.request import GenerationRequest, GenerationResult, Sampling
    from bark_model.voices import VoicePrompt

# The public names and their modules, imported on first use: `import bark_model.names` (file names,
# devices, precisions) must not pay torch's import (~1.5 s) for `barkpipe validate` and `--dry-run`.
_EXPORTS = {
    "BarkEngine": "bark_model.engine",
    "GenerationRequest": "bark_model.request",
    "GenerationResult": "bark_model.request",
    "Sampling": "bark_model.request",
    "VoicePrompt": "bark_model.voices",
}
__all__ = ["BarkEngine", "GenerationRequest", "GenerationResult", "Sampling", "VoicePrompt"]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bark_model' has no attribute {name!r}")
