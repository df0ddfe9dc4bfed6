"""Frozen hyperparameters of Bark's three GPTs, read from either checkpoint format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

C = TypeVar("C", bound="GPTConfig")  # from_model_args/from_hf return the class they are called on


@dataclass(frozen=True)
class GPTConfig:
    """A nanoGPT-style transformer (Bark's text and coarse models)."""

    n_layer: int
    n_head: int
    n_embd: int
    input_vocab_size: int
    output_vocab_size: int
    block_size: int = 1024
    bias: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "input_vocab_size", "output_vocab_size", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_model_args(cls: type[C], model_args: dict) -> C:
        """Suno `model_args` (nanoGPT names), including the legacy single `vocab_size`."""
        args = dict(model_args)
        if "input_vocab_size" not in args and "vocab_size" in args:
            args["input_vocab_size"] = args["output_vocab_size"] = args.pop("vocab_size")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown model_args {unknown}; known: {sorted(known)}")
        typed: dict[str, Any] = {
            k: (float(v) if k == "dropout" else bool(v) if k == "bias" else int(v)) for k, v in args.items()
        }
        return cls(**typed)

    @classmethod
    def from_hf(cls: type[C], sub_config: dict) -> C:
        """A Hugging Face Bark sub-config (`num_layers`, `num_heads`, `hidden_size`, ...)."""
        renames = {"num_layers": "n_layer", "num_heads": "n_head", "hidden_size": "n_embd"}
        known = {f.name for f in fields(cls)}
        args = {}
        for key, value in sub_config.items():
            key = renames.get(key, key)
            if key in known:
                args[key] = value
        return cls.from_model_args(args)

    def to_model_args(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FineGPTConfig(GPTConfig):
    """The non-causal fine model: one embedding table per codebook, one head per predicted one."""

    n_codes_total: int = 8
    n_codes_given: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.n_codes_given < self.n_codes_total:
            raise ValueError(f"need 0 < n_codes_given ({self.n_codes_given}) < n_codes_total ({self.n_codes_total})")
