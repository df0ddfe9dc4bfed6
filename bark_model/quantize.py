"""Weight-only int8: each Linear keeps int8 weights and one scale per output channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


FUSED_MAX_ROWS = 32  # above this many rows the fused CPU int8 kernel loses to dequantise + matmul


class Int8Linear(nn.Module):
    """y = x @ (int8 W * scale)^T; activations stay in their float dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [N], symmetric per channel
        self.register_buffer("weight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(linear.weight.dtype))
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, shape[-1])
        scales = self.scales.to(x.dtype)
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16) and x2d.shape[0] <= FUSED_MAX_ROWS:
            # Decode steps: the fused int8 x bf16 kernel reads 1 byte per weight, no float copy.
            y = torch.ops.aten._weight_int8pack_mm(x2d.contiguous(), self.weight, scales)
        else:
            # Prefill, fine windows and GPU: dequantise, then one matmul (the copy is small next
            # to M x N x K work; measured ~2.5x faster than the fused kernel at M >= 64 on CPU).
            y = F.linear(x2d, self.weight.to(x.dtype)) * scales
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear for an Int8Linear in place (embeddings stay float: lookups are cheap)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child))
        else:
            quantize_int8(child)
    return model
