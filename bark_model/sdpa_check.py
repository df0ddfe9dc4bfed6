"""Which scaled_dot_product_attention kernel each of Bark's attention calls gets on a device: probed, not assumed.

PyTorch picks the first backend in its priority order whose constraints the call meets (dtype,
head size, mask, device). The probe replays each call's kind — same dtype, heads, head size,
mask or none, real lengths, batch 1 — with one backend allowed at a time, in that order, and
reports the first that runs. A boolean mask rules out flash attention, so the masked calls
(decode steps and coarse window prefills) are expected on mem-efficient attention.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bark_model.coarse import WINDOW_PREFIX_MAX
from bark_model.constants import CONTEXT_WINDOW

log = logging.getLogger(__name__)

NAMES = {
    SDPBackend.FLASH_ATTENTION: "flash",
    SDPBackend.EFFICIENT_ATTENTION: "mem-efficient",
    SDPBackend.CUDNN_ATTENTION: "cudnn",
    SDPBackend.MATH: "math",
}
# call -> (query length, key length, boolean mask?) as Bark's loops make them
CALLS = {
    "decode step": (1, CONTEXT_WINDOW, True),
    "coarse window prefill": (WINDOW_PREFIX_MAX, WINDOW_PREFIX_MAX, True),  # the longest one
    "fine window": (CONTEXT_WINDOW, CONTEXT_WINDOW, False),
}


def priority_order() -> list[SDPBackend]:
    """The backends PyTorch would try, in its order (its private order query where it exists)."""
    backends = list(NAMES)
    order = getattr(torch._C, "_get_sdp_priority_order", None)
    if order is not None:
        ranks = order()
        backends.sort(key=lambda b: ranks.index(b.value) if b.value in ranks else len(ranks))
    return backends


def probe(device: torch.device, dtype: torch.dtype, n_head: int, head_dim: int, q_len: int, kv_len: int,
          masked: bool) -> str:  # fmt: skip
    """The name of the first backend that runs this kind of call, or 'none'."""
    q = torch.randn(1, n_head, q_len, head_dim, device=device, dtype=dtype)
    k = torch.randn(1, n_head, kv_len, head_dim, device=device, dtype=dtype)
    v = torch.randn_like(k)
    mask = None
    if masked:  # the shape and kind gpt.py builds: keys at or before each query's position
        positions = torch.arange(kv_len - q_len, kv_len, device=device)
        mask = torch.arange(kv_len, device=device)[None, None, None, :] <= positions[None, :, None]
    for backend in priority_order():
        try:
            with warnings.catch_warnings(), sdpa_kernel([backend]):
                warnings.simplefilter("ignore")  # each refusing backend warns why; the answer is enough
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return NAMES[backend]
        except RuntimeError:
            continue
    return "none"


def attention_backends(models: dict, device: torch.device, dtype: torch.dtype) -> dict[str, str]:
    """{call: backend} for the coarse and fine models' attention calls on this device; logged once."""
    found = {}
    with torch.inference_mode():
        for call, (q_len, kv_len, masked) in CALLS.items():
            config = (models["fine"] if call == "fine window" else models["coarse"]).config
            found[call] = probe(device, dtype, config.n_head, config.n_embd // config.n_head, q_len, kv_len, masked)
    log.info("attention kernels on %s (%s): %s", device, str(dtype).removeprefix("torch."),
             ", ".join(f"{call}: {name}" for call, name in found.items()))  # fmt: skip
    return found
