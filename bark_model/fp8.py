"""fp8 (e4m3) matmuls through torch._scaled_mm: per-output-channel weight scales, per-token activation scales.

A module swap like quantize.py's int8: every nn.Linear becomes an Fp8Linear holding e4m3 weights
[N, K] and one fp32 scale per output channel; each call scales every input row (token) by its
own absolute maximum, casts it to e4m3, and lets the tensor cores multiply and rescale
(y = (x / sx) @ (W / sw)^T * sx * sw). Activations around the matmuls stay bf16 (the rowwise
kernel writes bf16). fp8 tensor cores need compute capability 8.9 or newer (Ada, Hopper).
"""

from __future__ import annotations

import torch
from torch import nn

E4M3_MAX = 448.0  # largest finite float8_e4m3fn value
MIN_CAPABILITY = (8, 9)  # Ada / Hopper: the first cards with fp8 tensor cores
_TINY = 1e-12  # keeps an all-zero row's scale finite


def check_fp8_device(device: torch.device) -> None:
    """Raise ValueError unless `device` is a CUDA GPU with fp8 tensor cores."""
    if device.type != "cuda":
        raise ValueError(f"precision fp8 needs a CUDA GPU with compute capability >= 8.9 (H100, H200, L4, RTX 40xx); "
                         f"this engine is on {device}: use precision bf16 or int8 instead")  # fmt: skip
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"precision fp8 needs compute capability >= 8.9; {name} has {capability[0]}.{capability[1]}: "
                         "use precision fp16, bf16 or int8 instead")  # fmt: skip


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (e4m3 [M, K], fp32 scales [M, 1]) with x ~= q * scale, one scale per row."""
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp(min=_TINY) / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn), scale


class Fp8Linear(nn.Module):
    """y = x @ W^T (+ b) with W and each row of x in e4m3 and their scales applied by _scaled_mm."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scales = quantize_rows(linear.weight.detach().float())  # [N, K] e4m3, [N, 1]
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales.view(1, -1))  # [1, N]: one per output channel
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def _apply(self, fn, recurse=True):
        # model.to(dtype=bf16) must not turn the e4m3 weights or fp32 scales into bf16.
        weight, scales = self.weight, self.scales
        super()._apply(fn, recurse)
        self.weight = weight.to(device=self.weight.device)
        self.scales = scales.to(device=self.scales.device)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        q, x_scales = quantize_rows(x.reshape(-1, shape[-1]))  # [M, K], [M, 1]
        # mat2 must be column-major: the transpose of the row-major [N, K] weight is.
        y = torch._scaled_mm(q, self.weight.t(), scale_a=x_scales, scale_b=self.scales, out_dtype=torch.bfloat16)
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


KEEP = ("lm_head", "lm_heads")  # output heads stay bf16: ~3% of the weights, most of the argmax error


def quantize_fp8(model: nn.Module, keep: tuple[str, ...] = KEEP) -> nn.Module:
    """Swap every nn.Linear for an Fp8Linear in place, except children named in `keep` (and embeddings, LayerNorms)."""
    for name, child in list(model.named_children()):
        if name in keep:
            continue
        if isinstance(child, nn.Linear):
            setattr(model, name, Fp8Linear(child))
        else:
            quantize_fp8(child, keep)
    return model
