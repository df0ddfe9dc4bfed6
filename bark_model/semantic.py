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
from bark_model.decode_step import StepRunner
from bark_model.gpt import GPT, KVCache, cache_dtype
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


class SemanticWorkspace:
    """Per-slot state of the semantic decode loop; every tensor keeps its address for life.

    A slot holds one row at a time. Its sampling parameters and EOS rule are copied in when the
    row is admitted, so the loop body reads slot tensors only and can be replayed as a graph.
    """

    def __init__(self, model: GPT, slots: int, max_tokens: int, use_graphs: bool, compile: bool = False):
        device, dtype = model.wte.weight.device, model.wte.weight.dtype
        self.model, self.slots, self.max_tokens = model, slots, max_tokens
        self.cache = KVCache.allocate(model.config, slots, PREFIX_LEN + max_tokens, device, cache_dtype(model, dtype))
        zeros = lambda dtype: torch.zeros(slots, dtype=dtype, device=device)  # noqa: E731
        self.logits = torch.zeros(slots, model.config.output_vocab_size, dtype=dtype, device=device)
        self.out = torch.zeros(slots, max_tokens, dtype=torch.int64, device=device)
        self.steps, self.done = zeros(torch.int64), torch.ones(slots, dtype=torch.bool, device=device)
        self.limit, self.min_eos, self.eos_allowed = zeros(torch.int64), zeros(torch.float32), zeros(torch.bool)
        self.params = RowSampling(
            zeros(torch.float32), zeros(torch.int64), zeros(torch.float32) + 1, zeros(torch.int64), False
        )
        self.runner = StepRunner(self._body, device, use_graphs, self.cache.length, compile, "semantic")
        self.compile = compile

    def fits(self, slots: int, max_tokens: int, needs_filter: bool, compile: bool) -> bool:
        same_kind = self.params.needs_filter == needs_filter and self.compile == compile
        return self.slots == slots and self.max_tokens >= max_tokens and same_kind

    def _body(self, kv_len: int) -> None:
        """Sample one token per slot, book it, and run the forward pass for the next one."""
        relevant = self.logits[:, : SEMANTIC_VOCAB_SIZE + 1].float()
        relevant[:, SEMANTIC_PAD_TOKEN].masked_fill_(~self.eos_allowed, float("-inf"))
        token, probs = sample(relevant, self.params, SEMANTIC_STREAM, self.steps, return_probs=True)
        ended = self.done | (token == SEMANTIC_PAD_TOKEN) | (probs[:, SEMANTIC_PAD_TOKEN] >= self.min_eos)
        keep = ~ended
        col = self.steps.clamp(max=self.max_tokens - 1)[:, None]
        self.out.scatter_(1, col, torch.where(keep, token, self.out.gather(1, col)[:, 0])[:, None])
        self.steps += keep.long()
        self.done.copy_(ended | (self.steps >= self.limit))
        # Finished slots step on a harmless token at a harmless position until refilled.
        feed = torch.where(self.done, torch.zeros_like(token), token)[:, None]
        pos = torch.where(self.done, torch.full_like(self.steps, PREFIX_LEN), PREFIX_LEN + self.steps - 1)[:, None]
        rows = torch.zeros_like(token)
        self.logits.copy_(self.model(feed, positions=pos, cache=self.cache, kv_len=kv_len, logit_index=rows))

    def admit(self, free: list[int], rows: list[int], batch: _Rows) -> None:
        """Prefill rows into free slots (one batched prefill) and copy their settings in."""
        device = self.logits.device
        slot_ids = torch.tensor(free, device=device)
        row_ids = torch.tensor(rows, device=device)
        positions = torch.arange(PREFIX_LEN, device=device).expand(len(rows), PREFIX_LEN)
        embeds = prefix_embeddings(self.model, batch.text[row_ids], batch.hist[row_ids])
        logits = self.model(embeds=embeds, positions=positions, cache=self.cache, kv_len=PREFIX_LEN,
                            logit_index=positions[:, -1], slots=slot_ids)  # fmt: skip
        self.logits[slot_ids] = logits.to(self.logits.dtype)
        self.steps[slot_ids] = 0
        self.done[slot_ids] = False
        self.limit[slot_ids] = batch.limit[row_ids]
        self.min_eos[slot_ids] = batch.min_eos[row_ids]
        self.eos_allowed[slot_ids] = batch.eos_allowed[row_ids]
        for mine, theirs in zip(self.params.tensors(), batch.params.tensors(), strict=False):
            mine[slot_ids] = theirs[row_ids]


@dataclass
class _Rows:
    """All rows of one call, on the device, indexed by row."""

    text: torch.Tensor
    hist: torch.Tensor
    limit: torch.Tensor
    min_eos: torch.Tensor
    eos_allowed: torch.Tensor
    params: RowSampling


@torch.inference_mode()
def generate_semantic(
    model: GPT, rows: list[SemanticRow], sampling: RowSampling, max_batch: int | None = None,
    use_graphs: bool = False, workspaces: dict | None = None, compile: bool = False,
) -> list[np.ndarray]:  # fmt: skip
    """Semantic tokens for each row, decoding at most `max_batch` rows at a time.

    Continuous batching: every SYNC_EVERY steps the host looks at which rows finished and
    prefills waiting rows into their slots, so a batch is never held by its longest row.
    Rows never influence each other: each has its own cache slot, positions and noise stream.
    `workspaces` (a dict the caller keeps) lets later calls reuse buffers and CUDA graphs.
    `compile` runs the step body through torch.compile (see compile.py).
    """
    device = model.wte.weight.device
    N = len(rows)
    S = min(max_batch or N, N)
    batch = _Rows(
        torch.as_tensor(np.stack([r.text_ids for r in rows]), device=device),
        torch.as_tensor(np.stack([history_ids(r.history) for r in rows]), device=device),
        torch.tensor([r.max_tokens for r in rows], device=device),
        torch.tensor([r.min_eos_p if r.min_eos_p is not None else 2.0 for r in rows], device=device),
        torch.tensor([r.allow_early_stop for r in rows], device=device),
        sampling,
    )
    ws = _workspace(model, S, max(r.max_tokens for r in rows), sampling.needs_filter, use_graphs, compile, workspaces)
    ws.done.fill_(True)
    queue = list(range(N))
    holder: list[int | None] = [None] * S  # host: the row in each slot
    admitted_at: list[int] = [0] * S
    tokens: dict[int, np.ndarray] = {}  # row -> its tokens, filled as rows finish
    step = 0
    while True:
        if step % SYNC_EVERY == 0:
            # Look at the host only now and then: collect finished rows, admit waiting ones.
            done = ws.done.cpu().tolist()
            free = [s for s in range(S) if done[s]]
            if any(holder[s] is not None for s in free):
                out, steps = ws.out.cpu().numpy(), ws.steps.cpu().numpy()
                for s in free:
                    row = holder[s]
                    if row is not None:
                        tokens[row], holder[s] = out[s, : steps[s]].copy(), None
            take = free[: len(queue)]
            if take:
                new_rows = [queue.pop(0) for _ in take]
                ws.admit(take, new_rows, batch)
                for s, r in zip(take, new_rows, strict=False):
                    holder[s], admitted_at[s] = r, step
            if all(h is None for h in holder):
                break
        active = [step - admitted_at[s] for s in range(S) if holder[s] is not None]
        ws.runner(min(PREFIX_LEN + 1 + max(active, default=0), ws.cache.length))
        step += 1
    return [tokens[i] for i in range(N)]


def _workspace(model, slots, max_tokens, needs_filter, use_graphs, compile, workspaces) -> SemanticWorkspace:
    """A fresh workspace, or the caller's cached one when it fits (graphs need the full length)."""
    if workspaces is None:
        ws = SemanticWorkspace(model, slots, max_tokens, use_graphs, compile)
    else:
        key = "semantic"  # one workspace per stage: a new batch size replaces it (bounded memory)
        ws = workspaces.get(key)
        if ws is None or not ws.fits(slots, max_tokens, needs_filter, compile):
            ws = workspaces[key] = SemanticWorkspace(model, slots, MAX_SEMANTIC_TOKENS, use_graphs, compile)
    ws.params.needs_filter = needs_filter
    return ws
