"""Batched sampling on the device: per-row temperature, top-k, top-p and seed, no host syncs.

Randomness is counter-based: the uniform number for (row seed, stream, step) is a hash, so a
row's samples never depend on which other rows share its batch or on the device's RNG state.
A draw inverts the cumulative distribution of softmax(logits / T) at that one number per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # odd 28-bit multiplier: products of 32-bit values stay inside int64


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer over int64 tensors holding values in [0, 2**32)."""
    x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    return x ^ (x >> 16)


def uniform_noise(seeds: torch.Tensor, stream: int, step, shape_tail: tuple[int, ...]) -> torch.Tensor:
    """Uniform (0, 1) float32 noise [B, *shape_tail] keyed by (seed [B], stream, step, index).

    `step` is a python int or an int64 tensor broadcastable to [B]; nothing here reads the host.
    """
    device = seeds.device
    n = 1
    for size in shape_tail:
        n *= size
    key = _hash32((seeds & _MASK32) ^ _hash32((seeds >> 32) & _MASK32))
    key = _hash32(key ^ ((stream * 0x9E3779B1) & _MASK32))
    key = _hash32(key ^ (torch.as_tensor(step, device=device, dtype=torch.int64) & _MASK32))
    index = torch.arange(n, device=device, dtype=torch.int64)
    bits = _hash32(key[:, None] ^ _hash32(index)[None, :])  # [B, n]
    # 24 bits fit a float32 mantissa exactly; +0.5 keeps the value strictly inside (0, 1).
    u = ((bits >> 8).to(torch.float32) + 0.5) / float(1 << 24)
    return u.view(-1, *shape_tail)


@dataclass
class RowSampling:
    """Per-row sampling parameters as device tensors, built once per batch."""

    temperature: torch.Tensor  # [B] float32; 0 = greedy
    top_k: torch.Tensor  # [B] int64; 0 = off
    top_p: torch.Tensor  # [B] float32; 1 = off
    seeds: torch.Tensor  # [B] int64
    needs_filter: bool  # any row uses top-k or top-p (host-known, so no sync to decide)
    all_greedy: bool = False  # every row takes the argmax: skip the distribution work

    @classmethod
    def build(cls, samplings, seeds, device) -> RowSampling:
        temps = [0.0 if s.greedy else s.temperature for s in samplings]
        ks = [s.top_k or 0 for s in samplings]
        ps = [s.top_p if s.top_p is not None else 1.0 for s in samplings]
        return cls(
            temperature=torch.tensor(temps, dtype=torch.float32, device=device),
            top_k=torch.tensor(ks, dtype=torch.int64, device=device),
            top_p=torch.tensor(ps, dtype=torch.float32, device=device),
            seeds=torch.tensor([int(s) for s in seeds], dtype=torch.int64, device=device),
            needs_filter=any(k > 0 for k in ks) or any(p < 1.0 for p in ps),
            all_greedy=all(t == 0 for t in temps),
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.temperature, self.top_k, self.top_p, self.seeds

    def select(self, rows: torch.Tensor) -> RowSampling:
        return RowSampling(
            self.temperature[rows],
            self.top_k[rows],
            self.top_p[rows],
            self.seeds[rows],
            self.needs_filter,
            self.all_greedy,
        )


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Official order: top-p, then top-k, both on untempered logits [B, V]; removed -> -inf."""
    sorted_logits, order = logits.float().sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative > top_p[:, None]
    # Shift right so the first token that crosses the threshold stays; the top one always stays.
    remove = torch.cat([torch.zeros_like(remove[:, :1]), remove[:, :-1]], dim=-1)
    vocab = logits.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    kth = sorted_logits.gather(-1, (k - 1)[:, None])  # [B, 1]
    kth_removed = remove.gather(-1, (k - 1)[:, None])
    # After top-p the k-th largest may already be gone; then top-k removes nothing more.
    threshold = torch.where(kth_removed, torch.full_like(kth, float("-inf")), kth)
    removed = torch.zeros_like(remove).scatter(-1, order, remove)
    filtered = logits.float().masked_fill(removed, float("-inf"))
    return filtered.masked_fill(filtered < threshold, float("-inf"))


def sample(logits: torch.Tensor, params: RowSampling, stream: int, step, return_probs: bool = False):
    """Pick one index per row from logits [B, V]; greedy rows take the argmax.

    With return_probs, also returns the tempered, filtered probabilities [B, V] (one-hot of
    the argmax for greedy rows), which the semantic stage's EOS rule reads.
    """
    if params.all_greedy and not return_probs:
        return logits.argmax(dim=-1)
    scores = logits.float()
    if params.needs_filter:
        scores = filter_logits(scores, params.top_k, params.top_p)
    greedy = params.temperature <= 0
    best = scores.argmax(dim=-1)
    temp = torch.where(greedy, torch.ones_like(params.temperature), params.temperature)[:, None]
    probs = (scores / temp).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = uniform_noise(params.seeds, stream, step, (1,)) * cdf[:, -1:]  # [B, 1], scaled for rounding
    drawn = torch.searchsorted(cdf, u).squeeze(-1).clamp(max=scores.shape[-1] - 1)
    choice = torch.where(greedy, best, drawn)
    if not return_probs:
        return choice
    # A comparison, not F.one_hot: no value check, so nothing waits on the host (graph-safe).
    one_hot = (best[:, None] == torch.arange(scores.shape[-1], device=scores.device)).to(probs.dtype)
    return choice, torch.where(greedy[:, None], one_hot, probs)
