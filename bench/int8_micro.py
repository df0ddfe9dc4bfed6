"""Which CPU int8 kernel wins where: whole passes of the small model with each Linear kernel.

    python3 bench/int8_micro.py                 # small model, ~3 minutes on an idle 2-core CPU
    python3 bench/int8_micro.py --cpu-clock     # one thread, CPU time: for a machine others share
    python3 bench/int8_micro.py --size tiny     # seconds: checks the script only

Passes timed (best of --repeats, after one warm-up): one fine-model pass over a 1024-frame
window (batch 1; the fine stage is 6 such passes per window per row), one coarse prefill of
887 tokens (batch 1), and one KV-cache decode step of the text model at batch 1 and 8 (key
length 400). Kernels: fp32 and bf16 (F.linear), `w8` (int8 weights, bf16 activations: the
fused kernel for few rows, dequantise + bf16 matmul for many), `w8a8-token` (the engine's:
torch.ops.quantized.linear_dynamic on prepacked weights, one call, one activation scale per
token), `w8a8-row` (one call per batch row, outputs copied together), `w8a8-tensor` (one call,
one scale for the whole batch: not batch-invariant, the bound for the others) and `w8a8-intmm`
(per-token int8 activations, torch._int_mm, scales applied after). "attn" is the dtype of
everything that is not a Linear (attention, LayerNorm, KV cache). A whole pass is timed, not
one Linear, so weights come from memory as in a real run.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bark_model.gpt import KVCache
from bark_model.quantize import Int8Linear, quantize_int8
from bark_model.random_weights import model_configs, random_model


def w8_weight_only(self, x):
    return Int8Linear.weight_only(self, x)


def w8a8_token(self, x):
    return Int8Linear.dynamic(self, x)  # what the engine runs on CPU: one call, a scale per token


def w8a8_row(self, x):
    """One call per batch row (its 1-1024 tokens share a scale), outputs copied into one tensor."""
    rows = x.reshape(x.shape[0], -1, x.shape[-1])
    out = x.new_empty(*rows.shape[:-1], self.out_features)
    for row, y in zip(rows.unbind(0), out.unbind(0), strict=True):
        y.copy_(torch.ops.quantized.linear_dynamic(row.float(), self.packed, False))
    return out.view(*x.shape[:-1], self.out_features)


def w8a8_tensor(self, x):
    """One call, one scale for the whole batch: the fastest form, but rows then depend on each other."""
    y = torch.ops.quantized.linear_dynamic(x.float().reshape(-1, x.shape[-1]), self.packed, False)
    return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


def w8a8_intmm(self, x):
    x2d = x.reshape(-1, x.shape[-1]).float()
    scale = x2d.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # [M, 1] per token
    q = torch.round(x2d / scale).to(torch.int8)
    y = torch._int_mm(q, self.weight.t()) * (scale * self.scales.float())
    if self.bias is not None:
        y = y + self.bias.float()
    return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


KERNELS = {"w8": w8_weight_only, "w8a8-token": w8a8_token, "w8a8-row": w8a8_row, "w8a8-tensor": w8a8_tensor,
           "w8a8-intmm": w8a8_intmm}  # fmt: skip


class Patched(Int8Linear):
    """Int8Linear that runs one named kernel for every call (the bench's choice, not the engine's)."""

    kernel = "w8"

    def forward(self, x):
        return KERNELS[self.kernel](self, x)


def variant(model, kernel: str | None, attn: torch.dtype):
    model = copy.deepcopy(model)
    if kernel is None:
        return model.to(attn)
    quantize_int8(model, activations=True)
    for m in model.modules():
        if isinstance(m, Int8Linear):
            m.__class__ = Patched
            m.kernel = kernel
    return model.to(attn)


def best_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times) * 1e3


def passes(models: dict, size: str) -> dict:
    """name -> callable(model) for one pass of each kind."""
    cfg = model_configs(size)
    g = torch.Generator().manual_seed(0)
    fine_codes = torch.randint(0, 1024, (1, 1024, 8), generator=g)
    prefill = torch.randint(0, 12_000, (1, 887), generator=g)

    def fine(m):
        m(4, fine_codes)

    def coarse_prefill(m):
        cache = KVCache.allocate(cfg["coarse"], 1, 947, "cpu", m.wte.weight.dtype)
        m(prefill, positions=torch.arange(887)[None], cache=cache, kv_len=887, logit_index=torch.tensor([886]))

    def decode(batch):
        caches = {}

        def step(m):
            key = m.wte.weight.dtype
            if key not in caches:
                caches[key] = KVCache.allocate(cfg["text"], batch, 401, "cpu", key)
            ids = torch.zeros(batch, 1, dtype=torch.long)
            m(
                ids,
                positions=torch.full((batch, 1), 399),
                cache=caches[key],
                kv_len=400,
                logit_index=torch.zeros(batch, dtype=torch.long),
            )

        return step

    return {"fine pass B1": ("fine", fine), "coarse prefill B1": ("coarse", coarse_prefill),
            "text step B1": ("text", decode(1)), "text step B8": ("text", decode(8))}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", choices=("tiny", "small", "large"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", help="comma-separated pass names to time (default: all)")
    p.add_argument("--kernels", help=f"comma-separated int8 kernels to time (default: all of {', '.join(KERNELS)})")
    p.add_argument("--attn", default="both", choices=("fp32", "bf16", "both"), help="dtype of the rest, int8 kernels")
    p.add_argument(
        "--cpu-clock",
        action="store_true",
        help="one thread, timed by its CPU time: rankings that survive a shared machine",
    )
    args = p.parse_args()
    clock = time.perf_counter
    if args.cpu_clock:
        torch.set_num_threads(1)
        clock = time.thread_time
    warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")  # the deprecation note, once per layer
    torch.manual_seed(0)
    cfg = model_configs(args.size)
    roles = {"text", "coarse", "fine"}
    base = {role: random_model(role, cfg[role], seed=i).eval() for i, role in enumerate(sorted(roles))}
    configs = [("fp32", None, torch.float32), ("bf16", None, torch.bfloat16)]
    attns = {"fp32": [torch.float32], "bf16": [torch.bfloat16], "both": [torch.bfloat16, torch.float32]}[args.attn]
    kernels = args.kernels.split(",") if args.kernels else list(KERNELS)
    configs += [(k, k, attn) for k in kernels for attn in attns]
    print(f"load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"quantized engine {torch.backends.quantized.engine}", flush=True)  # fmt: skip
    wanted = set(args.only.split(",")) if args.only else None
    with torch.inference_mode():
        for name, (role, fn) in passes(base, args.size).items():
            if wanted and name not in wanted:
                continue
            cells = []
            for label, kernel, attn in configs:
                if kernel is None and attn != torch.float32 and label == "fp32":
                    continue
                model = variant(base[role], kernel, attn)
                ms = best_ms(lambda m=model, f=fn: f(m), args.repeats, clock)
                cells.append(f"{label}/{str(attn)[6:]} {ms:.1f}")
            print(f"{name:>18}: " + "  ".join(cells) + f"   (ms; load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
