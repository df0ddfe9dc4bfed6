"""int8 Linear layers: int8 weights (a scale per output channel); on CPU, int8 activations (a scale per token)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

FUSED_MAX_ROWS = 32  # above this many rows the fused CPU int8 x bf16 kernel loses to dequantise + matmul


class Int8Linear(nn.Module):
    """y = x @ (int8 W * scale)^T; on CPU with `activations`, x is quantised to int8 too."""

    weight: torch.Tensor  # buffers (register_buffer): named here so their type is known
    scales: torch.Tensor

    def __init__(self, linear: nn.Linear, activations: bool = False):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [N], symmetric per channel
        self.register_buffer("weight", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(linear.weight.dtype))
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = self.packed_amx = self.span = None
        if activations:
            # fbgemm's prepacked form of the same int8 values (opaque: .to() leaves it on CPU), and
            # the row that pins the kernel's activation range (see dynamic); both stay fp32 on CPU.
            assert self.in_features >= 2, "the range row needs two columns"
            self.packed = _prepack(self.weight, scales)
            # Where the CPU has AMX, oneDNN's int8 kernel runs prefills and fine windows ~2x faster
            # than fbgemm's (a [1024, 768] x [768, 3072] pass: 4.6 against 9.8 ms at 887 rows, 2
            # threads) but loses at decode steps (0.22 against 0.08 ms for one row). Without AMX
            # only fbgemm was measured, so it does everything there.
            if has_amx():
                self.packed_amx = _prepack(self.weight, scales, "onednn")
            self.span = torch.zeros(self.in_features)
            self.span[:2] = torch.tensor([1.0, -1.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # On CPU int8 activations win at every shape Bark has (bench/int8_micro.py --cpu-clock, one
        # thread of a 2-core AVX-512 VNNI EPYC; ms): a text decode step at batch 8 takes 35 (fp32 76,
        # bf16 90, int8 weights only 79, one kernel call per row 46), a fine window pass 1116 (bf16
        # 1470, fp32 2463), a coarse 887-token prefill 973 (bf16 1207). So no size threshold:
        # weight-only int8 is for CUDA, where these kernels don't run.
        if self.packed is not None and x.device.type == "cpu":
            return self.dynamic(x)
        return self.weight_only(x)

    def dynamic(self, x: torch.Tensor) -> torch.Tensor:
        """[..., K]: int8 x int8 (VNNI) with one activation scale per token, in one kernel call.

        fbgemm's dynamic kernel takes one activation range for the whole input. Dividing each
        row by its own max |x| and appending one row that spans [-1, 1] pins that range to
        [-1, 1], so every row is quantised on its own scale: a row's output never depends on
        which rows share its batch, and one call serves the whole batch (the [-1, 1] grid of
        255 steps is as fine as a symmetric int8 scale per token). The extra passes over x and y
        cost ~5% of a fine window pass against one shared scale.
        """
        assert self.packed is not None and self.span is not None, "built without activations=True"
        x2d = x.reshape(-1, x.shape[-1])
        peak = x2d.abs().amax(dim=1, keepdim=True).float().clamp_(min=1e-12)  # [M, 1]; an all-zero row stays 0
        rows = torch.empty(x2d.shape[0] + 1, x2d.shape[1], dtype=torch.float32)  # [M + 1, K], all in [-1, 1]
        torch.div(x2d, peak, out=rows[:-1])
        rows[-1] = self.span
        # reduce_range=False: full 8-bit activations (VNNI accumulates u8 x s8 products in int32).
        y = torch.ops.quantized.linear_dynamic(rows, self.kernel_for(x), False)[:-1].mul_(peak)  # [M, N]
        if self.bias is not None:
            y += self.bias
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def kernel_for(self, x: torch.Tensor):
        """The packed weights for input x: oneDNN's for rows of many tokens where there is AMX.

        The choice follows the tokens per row (1 in a decode step), never the batch, so a row's
        output stays independent of the rows beside it (the two kernels round differently).
        """
        many = self.packed_amx is not None and x.dim() == 3 and x.shape[1] > 1
        return self.packed_amx if many else self.packed

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


def _prepack(weight: torch.Tensor, scales: torch.Tensor, engine: str | None = None):
    """Packed weights for `engine`'s kernels (default: torch's); calls dispatch on the packed form."""
    previous = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = engine or previous
        with warnings.catch_warnings():
            # torch 2.13 marks quantized tensors deprecated; the prepacked kernels are still its CPU int8 matmul.
            warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")
            zero = torch.zeros(len(scales), dtype=torch.long)
            qweight = torch._make_per_channel_quantized_tensor(weight, scales.double(), zero, 0)
        return torch.ops.quantized.linear_prepack(qweight, None)  # bias added after the row scales
    finally:
        torch.backends.quantized.engine = previous


def has_amx() -> bool:
    """The CPU has AMX int8 and bf16 tiles, and torch has oneDNN's int8 kernels for them."""
    capabilities: dict = getattr(torch.cpu, "get_capabilities", dict)()
    return (
        bool(capabilities.get("amx_int8") and capabilities.get("amx_bf16"))
        and "onednn" in torch.backends.quantized.supported_engines
    )


def quantize_int8(model: nn.Module, activations: bool = False) -> nn.Module:
    """Swap every nn.Linear for an Int8Linear in place (embeddings stay float: lookups are cheap).

    activations=True (CPU only) also prepacks the weights for the int8-activation kernels; the
    model's other layers should then stay fp32 (those kernels take and give fp32).
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child, activations))
        else:
            quantize_int8(child, activations)
    return model
