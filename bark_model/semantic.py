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
from bark_model.decode_step import DecodeStep
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


@dataclass
class _Slots:
    """Which row each cache slot holds; a finished row's slot is refilled from the queue."""

    row: torch.Tensor  # [S] row index per slot (the dummy row N when empty)
    steps: torch.Tensor  # [S] tokens sampled so far by the slot's row
    done: torch.Tensor  # [S] finished (or empty)
    logits: torch.Tensor  # [S, V] next-token logits
    admitted_at: list  # host: global step at which each slot's row arrived (None = empty)


@torch.inference_mode()
def generate_semantic(
    model: GPT, rows: list[SemanticRow], sampling: RowSampling, max_batch: int | None = None, use_graphs: bool = False
) -> list[np.ndarray]:
    """Semantic tokens for each row, decoding at most `max_batch` rows at a time.

    Continuous batching: every SYNC_EVERY steps the host looks at which rows finished and
    prefills waiting rows into their slots, so a batch is never held by its longest row.
    Rows never influence each other: each has its own cache slot, positions and noise stream.
    """
    device = model.wte.weight.device
    N = len(rows)
    S = min(max_batch or N, N)
    dummy = N  # an extra output row that empty slots write into
    text = torch.as_tensor(np.stack([r.text_ids for r in rows]), device=device)
    hist = torch.as_tensor(np.stack([history_ids(r.history) for r in rows]), device=device)
    per_row = lambda values: torch.tensor(values + [values[0]], device=device)  # noqa: E731  (+ dummy)
    min_eos = per_row([r.min_eos_p if r.min_eos_p is not None else 2.0 for r in rows])
    max_tokens = per_row([r.max_tokens for r in rows])
    eos_allowed = per_row([r.allow_early_stop for r in rows])
    params = RowSampling(*(torch.cat([t, t[:1]]) for t in (sampling.temperature, sampling.top_k, sampling.top_p, sampling.seeds)),
                         sampling.needs_filter, sampling.all_greedy)  # fmt: skip
    n_max = max(r.max_tokens for r in rows)
    cache = KVCache.allocate(model.config, S, PREFIX_LEN + n_max, device, model.wte.weight.dtype)
    out = torch.zeros(N + 1, n_max, dtype=torch.int64, device=device)
    lengths = torch.zeros(N + 1, dtype=torch.int64, device=device)
    vocab = model.config.output_vocab_size
    slots = _Slots(torch.full((S,), dummy, device=device), torch.zeros(S, dtype=torch.int64, device=device),
                   torch.ones(S, dtype=torch.bool, device=device), torch.zeros(S, vocab, device=device), [None] * S)  # fmt: skip
    step_fn = DecodeStep(model, cache, use_graphs)
    queue = list(range(N))
    _admit(model, slots, list(range(S)), queue, text, hist, cache, 0)
    step = 0
    while True:
        row = slots.row
        relevant = slots.logits[:, : SEMANTIC_VOCAB_SIZE + 1].float()
        relevant[:, SEMANTIC_PAD_TOKEN] = relevant[:, SEMANTIC_PAD_TOKEN].masked_fill(~eos_allowed[row], float("-inf"))
        token, probs = sample(relevant, params.select(row), SEMANTIC_STREAM, slots.steps, return_probs=True)
        ended = slots.done | (token == SEMANTIC_PAD_TOKEN) | (probs[:, SEMANTIC_PAD_TOKEN] >= min_eos[row])
        keep = ~ended
        col = slots.steps.clamp(max=n_max - 1)
        out[row, col] = torch.where(keep, token, out[row, col])
        lengths.index_put_((row,), keep.long(), accumulate=True)
        slots.steps += keep.long()
        slots.done = ended | (lengths[row] >= max_tokens[row])
        step += 1
        # Finished rows keep stepping on a harmless token at a harmless position until refilled
        # (built before the refill, so a just-admitted row's prompt is never overwritten).
        feed = torch.where(slots.done, torch.zeros_like(token), token)[:, None]
        pos = torch.where(slots.done, torch.full_like(slots.steps, PREFIX_LEN), PREFIX_LEN + slots.steps - 1)[:, None]
        if step % SYNC_EVERY == 0 or step >= n_max:
            # Look at the host only now and then; admitted rows bring their prefill logits.
            finished, admitted = _refill(model, slots, queue, text, hist, cache, step, dummy)
            if finished:
                break
        else:
            admitted = []
        active = [step - a for a in slots.admitted_at if a is not None]
        kv_len = PREFIX_LEN + max(active, default=0)
        fresh = slots.logits[admitted].clone() if admitted else None
        slots.logits = step_fn(feed, pos, min(kv_len, cache.length))
        if admitted:
            slots.logits[admitted] = fresh  # a new row's first token comes from its prefill
    out, lengths = out.cpu().numpy(), lengths.cpu().numpy()
    return [out[i, : lengths[i]] for i in range(N)]


def _admit(model, slots: _Slots, free: list[int], queue: list[int], text, hist, cache, step: int) -> list[int]:
    """Prefill waiting rows into the free slots (one batched prefill); returns the slots used."""
    take = [queue.pop(0) for _ in free[: len(queue)]]
    if not take:
        return []
    device = text.device
    slot_ids = torch.tensor(free[: len(take)], device=device)
    row_ids = torch.tensor(take, device=device)
    positions = torch.arange(PREFIX_LEN, device=device).expand(len(take), PREFIX_LEN)
    embeds = prefix_embeddings(model, text[row_ids], hist[row_ids])
    logits = model(embeds=embeds, positions=positions, cache=cache, kv_len=PREFIX_LEN, logit_index=positions[:, -1], slots=slot_ids)
    slots.logits[slot_ids] = logits.to(slots.logits.dtype)
    slots.row[slot_ids] = row_ids
    slots.steps[slot_ids] = 0
    slots.done[slot_ids] = False
    for s in free[: len(take)]:
        slots.admitted_at[s] = step
    return free[: len(take)]


def _refill(model, slots: _Slots, queue, text, hist, cache, step: int, dummy: int) -> tuple[bool, list[int]]:
    """Host look (one sync): free finished slots, admit waiting rows. (all done?, admitted slots)"""
    done = slots.done.cpu().tolist()
    free = [s for s, d in enumerate(done) if d]
    for s in free:
        slots.admitted_at[s] = None
        slots.row[s] = dummy
    if not queue:
        return len(free) == len(done), []
    return False, _admit(model, slots, free, queue, text, hist, cache, step)
