"""int8 Linear layers: int8 weights with one scale per output channel; on CPU, int8 activations too."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

FUSED_MAX_ROWS = 32  # above this many rows the fused CPU int8 x bf16 kernel loses to dequantise + matmul


class Int8Linear(nn.Module):
    """y = x @ (int8 W * scale)^T; on CPU with `activations`, x is quantised to int8 too."""

    def __init__(self, linear: nn.Linear, activations: bool = False):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [N], symmetric per channel
        self.register_buffer("weight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(linear.weight.dtype))
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # fbgemm/oneDNN's prepacked form of the same int8 values (an opaque object: .to() leaves it on CPU).
        self.packed = _prepack(self.weight, scales, linear.bias) if activations else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Measured on a 2-core AVX-512 VNNI EPYC (bench/int8_micro.py): int8 activations win for
        # every shape Bark has: fine windows (~1.3x bf16 per pass; attention is then half of
        # it) and decode steps (~1.6x at batch 8), so there is no size threshold.
        if self.packed is not None and x.device.type == "cpu":
            return self.dynamic(x)
        return self.weight_only(x)

    def dynamic(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, K] or [B, K]: the kernel quantises x to int8 per call (VNNI int8 x int8 matmul).

        One call per batch row: the activation scale is then the row's own, so a row's output
        never depends on which rows share its batch (a decode step's B calls reuse the weight
        from cache, so this costs little).
        """
        if x.shape[0] == 1 and x.dtype == torch.float32:
            return torch.ops.quantized.linear_dynamic(x, self.packed, False)
        rows = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, K]; a [B, K] input is B rows of one position
        out = x.new_empty(*rows.shape[:-1], self.out_features)
        for row, y in zip(rows.unbind(0), out.unbind(0), strict=True):
            y.copy_(torch.ops.quantized.linear_dynamic(row.float(), self.packed, False))  # the copy casts too
        return out.view(*x.shape[:-1], self.out_features)

    def weight_only(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, shape[-1])
        scales = self.scales.to(x.dtype)
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16) and x2d.shape[0] <= FUSED_MAX_ROWS:
            # Decode steps: the fused int8 x bf16 kernel reads 1 byte per weight, no float copy
            # (its fp32 form is ~3x slower than bf16 here: bench/int8_micro.py).
            y = torch.ops.aten._weight_int8pack_mm(x2d.contiguous(), self.weight, scales)
        else:
            # Prefill, fine windows and GPU: dequantise, then one matmul (the copy is small next
            # to M x N x K work; measured ~2.5x faster than the fused kernel at M >= 64 on CPU).
            y = F.linear(x2d, self.weight.to(x.dtype)) * scales
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def _prepack(weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
    with warnings.catch_warnings():
        # torch 2.13 marks quantized tensors deprecated; the prepacked kernels are still its CPU int8 matmul.
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")
        zero = torch.zeros(len(scales), dtype=torch.long)
        qweight = torch._make_per_channel_quantized_tensor(weight, scales.double(), zero, 0)
    return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())


def quantize_int8(model: nn.Module, activations: bool = False) -> nn.Module:
    """Swap every nn.Linear for an Int8Linear in place (embeddings stay float: lookups are cheap).

    activations=True (CPU only) also prepacks the weights for the int8-activation kernels.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child, activations))
        else:
            quantize_int8(child, activations)
    return model
