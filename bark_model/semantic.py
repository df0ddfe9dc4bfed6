"""Stage 1, text -> semantic tokens: batched decoding with a static cache and the official EOS rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bark_model.constants import (
    MAX_SEMANTIC_HISTORY,
    MAX_SEMANTIC_TOKENS,
    MAX_TEXT_TOKENS,
    SEMANTIC_INFER_TOKEN,
    SEMANTIC_PAD_TOKEN,
    SEMANTIC_RATE_HZ,
    SEMANTIC_VOCAB_SIZE,
)
from bark_model.gpt import GPT, KVCache
from bark_model.sampling import RowSampling, sample

PREFIX_LEN = MAX_TEXT_TOKENS + 1  # merged text+history slots, then the infer token
SYNC_EVERY = 16  # steps between looks at the host for "all rows finished"
SEMANTIC_STREAM = 1  # noise stream id of this stage


@dataclass(frozen=True)
class SemanticRow:
    text_ids: np.ndarray  # [256] offset + padded text ids
    history: np.ndarray | None  # [S] semantic prompt (any length) or None
    min_eos_p: float | None
    max_tokens: int  # stop after this many tokens (max duration), <= 768
    allow_early_stop: bool = True


def max_tokens_for_duration(max_duration_s: float | None) -> int:
    """Tokens before the official duration check fires (it adds 1/49.9 s per token, then tests >)."""
    if max_duration_s is None:
        return MAX_SEMANTIC_TOKENS
    total, n = 0.0, 0
    while n < MAX_SEMANTIC_TOKENS:
        n += 1
        total += 1 / SEMANTIC_RATE_HZ
        if total > max_duration_s:
            break
    return n


def history_ids(history: np.ndarray | None) -> np.ndarray:
    """The last 256 history tokens, right-padded with the semantic pad."""
    out = np.full(MAX_SEMANTIC_HISTORY, SEMANTIC_PAD_TOKEN, dtype=np.int64)
    if history is not None:
        tail = history[-MAX_SEMANTIC_HISTORY:]
        out[: len(tail)] = tail
    return out


def prefix_embeddings(model: GPT, text_ids: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """[B, 257, D]: text and history embeddings summed slot by slot, then the infer token."""
    infer = torch.full((text_ids.shape[0], 1), SEMANTIC_INFER_TOKEN, device=text_ids.device)
    return torch.cat([model.wte(text_ids) + model.wte(history), model.wte(infer)], dim=1)


@torch.inference_mode()
def generate_semantic(model: GPT, rows: list[SemanticRow], sampling: RowSampling) -> list[np.ndarray]:
    """Semantic tokens for each row; rows never influence each other."""
    device = model.wte.weight.device
    B = len(rows)
    text = torch.as_tensor(np.stack([r.text_ids for r in rows]), device=device)
    hist = torch.as_tensor(np.stack([history_ids(r.history) for r in rows]), device=device)
    min_eos = torch.tensor([r.min_eos_p if r.min_eos_p is not None else 2.0 for r in rows], device=device)
    max_tokens = torch.tensor([r.max_tokens for r in rows], device=device)
    # Rows that may not stop on EOS never see its logit (the official allow_early_stop=False).
    eos_allowed = torch.tensor([r.allow_early_stop for r in rows], device=device)
    n_steps = max(r.max_tokens for r in rows)
    cache = KVCache.allocate(model.config, B, PREFIX_LEN + n_steps, device, model.wte.weight.dtype)
    out = torch.zeros(B, n_steps, dtype=torch.int64, device=device)
    lengths = torch.zeros(B, dtype=torch.int64, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)

    positions = torch.arange(PREFIX_LEN, device=device).expand(B, PREFIX_LEN)
    embeds = prefix_embeddings(model, text, hist)
    logits = model(embeds=embeds, positions=positions, cache=cache, kv_len=PREFIX_LEN, logit_index=positions[:, -1])
    for step in range(n_steps):
        # Logits 0..9999 are semantic tokens, 10000 is EOS; the rest of the head is never used.
        relevant = logits[:, : SEMANTIC_VOCAB_SIZE + 1].float()
        relevant[:, SEMANTIC_PAD_TOKEN] = relevant[:, SEMANTIC_PAD_TOKEN].masked_fill(~eos_allowed, float("-inf"))
        token, probs = sample(relevant, sampling, SEMANTIC_STREAM, step, return_probs=True)
        eos = (token == SEMANTIC_PAD_TOKEN) | (probs[:, SEMANTIC_PAD_TOKEN] >= min_eos)
        done |= eos
        out[:, step] = token
        lengths += (~done).long()
        done |= lengths >= max_tokens
        if step + 1 == n_steps:
            break
        if (step + 1) % SYNC_EVERY == 0 and bool(done.all()):
            break
        pos = torch.full((B, 1), PREFIX_LEN + step, device=device)
        # Finished rows keep stepping on a harmless token; their outputs are cut by `lengths`.
        feed = torch.where(done, torch.zeros_like(token), token)[:, None]
        logits = model(feed, positions=pos, cache=cache, kv_len=PREFIX_LEN + step + 1, logit_index=torch.zeros_like(token))
    out, lengths = out.cpu().numpy(), lengths.cpu().numpy()
    return [out[i, : lengths[i]] for i in range(B)]
