"""barkpipe's Bark engine: pure inference (torch, numpy, tokenizers), usable without Ray."""

from bark_model.engine import BarkEngine
from bark_model.request import GenerationRequest, GenerationResult, Sampling
from bark_model.voices import VoicePrompt

__all__ = ["BarkEngine", "GenerationRequest", "GenerationResult", "Sampling", "VoicePrompt"]
