"""Memory-bandwidth ceilings for Bark's two autoregressive stages (semantic, coarse).

A decode step reads every weight the step multiplies by once (shared by the batch) plus each
row's KV cache up to its current position; at bandwidth W bytes/s a step can't take less than
bytes / W, so B rows make at most B * W / bytes tokens per second. The fine stage is one
non-causal pass per codebook over a 1024-frame window (compute-bound), so it has no row here.
"""

from __future__ import annotations

import time

from bark_model.constants import (
    COARSE_WINDOW,
    MAX_COARSE_HISTORY,
    MAX_COARSE_INPUT,
    MAX_TEXT_TOKENS,
    SAMPLES_PER_FRAME,
    SAMPLE_RATE,
    SEMANTIC_TO_COARSE_RATIO,
)

# Bytes per weight as stored for each precision (int8: weight-only, scales ignored).
WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
SEMANTIC_PREFIX = MAX_TEXT_TOKENS + 1  # text+history merged into 256 positions, then the infer token
COARSE_PREFIX = MAX_COARSE_INPUT + 1  # 256 semantic slots, then the infer token


def step_weight_params(n_layer: int, n_embd: int, output_vocab: int) -> int:
    """Parameters one decode step multiplies by: the blocks, the final LayerNorm and the head.

    Embedding tables are gathered one row per token, so they are left out.
    """
    block = 12 * n_embd * n_embd + 4 * n_embd  # qkv + proj + 4x MLP, two LayerNorm weights
    return n_layer * block + n_embd + n_embd * output_vocab


def kv_bytes_per_row(n_layer: int, n_embd: int, context: int, kv_bytes: int) -> int:
    """K and V of every layer for `context` positions of one row."""
    return 2 * n_layer * context * n_embd * kv_bytes


def decode_step_bytes(cfg, batch: int, context: int, weight_bytes: float, kv_bytes: int) -> float:
    """Bytes one step reads: weights once, plus each row's KV cache. `cfg` is a GPTConfig."""
    weights = step_weight_params(cfg.n_layer, cfg.n_embd, cfg.output_vocab_size) * weight_bytes
    return weights + batch * kv_bytes_per_row(cfg.n_layer, cfg.n_embd, context, kv_bytes)


def tokens_per_s_ceiling(step_bytes: float, batch: int, bandwidth: float) -> float:
    return batch * bandwidth / step_bytes


def semantic_ceiling(cfg, batch: int, n_tokens: int, weight_bytes: float, kv_bytes: int, bandwidth: float) -> float:
    """Semantic tokens/s (all rows) for n decode steps after the 257-position prefix."""
    total = sum(decode_step_bytes(cfg, batch, SEMANTIC_PREFIX + i, weight_bytes, kv_bytes) for i in range(n_tokens))
    return batch * n_tokens * bandwidth / total


def coarse_steps(n_semantic: int) -> list[int]:
    """Context length of each coarse decode step, window by window (no voice prompt).

    Each 60-token window restarts its cache on 257 prefix positions plus up to 630 coarse
    tokens of history, then writes its tokens one by one.
    """
    n_coarse = int(n_semantic * SEMANTIC_TO_COARSE_RATIO / 2) * 2  # frames x 2 codebooks
    contexts, done = [], 0
    while done < n_coarse:
        history = min(done, MAX_COARSE_HISTORY)
        window = min(COARSE_WINDOW, n_coarse - done)
        contexts.extend(COARSE_PREFIX + history + j for j in range(window))
        done += window
    return contexts


def coarse_ceiling(cfg, batch: int, n_semantic: int, weight_bytes: float, kv_bytes: int, bandwidth: float) -> float:
    contexts = coarse_steps(n_semantic)
    total = sum(decode_step_bytes(cfg, batch, c, weight_bytes, kv_bytes) for c in contexts)
    return batch * len(contexts) * bandwidth / total


def audio_ceiling(configs: dict, batch: int, n_semantic: int, weight_bytes: float, kv_bytes: int, bandwidth: float) -> dict:
    """Both stage ceilings and the audio-s/s they allow together (fine stage and codec left out)."""
    sem = semantic_ceiling(configs["text"], batch, n_semantic, weight_bytes, kv_bytes, bandwidth)
    coarse = coarse_ceiling(configs["coarse"], batch, n_semantic, weight_bytes, kv_bytes, bandwidth)
    n_coarse = len(coarse_steps(n_semantic))
    seconds = batch * n_semantic / sem + batch * n_coarse / coarse
    audio = batch * (n_coarse // 2) * SAMPLES_PER_FRAME / SAMPLE_RATE
    return {"semantic_tok_s": sem, "coarse_tok_s": coarse, "audio_s_per_s": audio / seconds}


def measure_bandwidth(device, n_bytes: int | None = None, repeats: int = 5) -> float:
    """Copy bandwidth in bytes/s (read + write counted) of a large tensor copy on `device`, best of a few."""
    import torch

    device = torch.device(device)
    n_bytes = n_bytes or (2**30 if device.type == "cuda" else 2**28)
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n_bytes / min(times[1:])  # the first copy faults pages in, so it is dropped
