"""Device and precision choice: `auto` tries cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from bark_model.names import DEVICES, PRECISIONS

# The activation dtype of each precision (bark_model.names.PRECISIONS; a test keeps the two in step).
# int8 = int8 weights with bf16 activations (the fused CPU kernel and GPU matmuls want a 16-bit input).
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device must be {DEVICES}, got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use device 'cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} asked for, but MPS is not available here; use device 'cpu' or 'auto'")
    return device


def resolve_dtype(precision: str) -> torch.dtype:
    """Activation dtype of a precision name."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return DTYPES[precision]
