"""Bark's causal GPT (text and coarse models) with a static, position-indexed KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bark_model.config import GPTConfig


class CausalSelfAttention(nn.Module):
    # The dtype attention and the KV cache are kept in; None: the input's (see set_attention_dtype).
    attention_dtype: torch.dtype | None = None

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def attend(self, q, k, v, **kwargs) -> torch.Tensor:
        """scaled_dot_product_attention in attention_dtype, the result in q's dtype."""
        dtype = self.attention_dtype or q.dtype
        y = F.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), **kwargs)
        return y.to(q.dtype)

    def forward(self, x, cache_k=None, cache_v=None, positions=None, kv_len=None, slots=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # [B, T, C] -> [B, H, T, hd]; heads are contiguous column slices (q, k, v order)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head)
        v = v.view(B, T, self.n_head, C // self.n_head)
        if cache_k is None:
            y = self.attend(q, k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        else:
            # Each row writes its new keys at its own positions, so rows may sit at different
            # positions (different prompt lengths, rows admitted mid-run) without padding.
            # `slots` [B] picks the cache rows of a subset (rows admitted mid-run); else all rows.
            rows = (torch.arange(B, device=x.device) if slots is None else slots)[:, None]  # [B, 1]
            cache_k[rows, :, positions] = k.to(cache_k.dtype)  # indexed view is [B, T, H, hd]
            cache_v[rows, :, positions] = v.to(cache_v.dtype)
            keys = torch.arange(kv_len, device=x.device)
            # A key is visible to a query iff it sits at or before the query's position;
            # stale entries from an earlier row in this slot are always in the future.
            mask = keys[None, None, None, :] <= positions[:, None, :, None]  # [B, 1, T, kv_len]
            k_all, v_all = cache_k[:, :, :kv_len], cache_v[:, :, :kv_len]
            if slots is not None:
                k_all, v_all = k_all[slots], v_all[slots]
            y = self.attend(q, k_all, v_all, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()  # exact erf form, as trained
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, causal: bool = True):
        super().__init__()
        # Text/coarse LayerNorms follow config.bias (False in every checkpoint); the fine
        # model's always have a bias, so it passes causal=False and gets them.
        ln_bias = config.bias if causal else True
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=ln_bias)
        self.attn = CausalSelfAttention(config) if causal else NonCausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=ln_bias)
        self.mlp = MLP(config)

    def forward(self, x, **attn_kwargs):
        x = x + self.attn(self.ln_1(x), **attn_kwargs)
        return x + self.mlp(self.ln_2(x))


class NonCausalSelfAttention(CausalSelfAttention):
    """Full attention over the window (fine model); no cache."""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        y = self.attend(q, k, v)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


def set_attention_dtype(model: nn.Module, dtype: torch.dtype | None) -> None:
    """Attend (and keep the KV cache) in `dtype`, whatever the Linears run in (None: the model's)."""
    for module in model.modules():
        if isinstance(module, CausalSelfAttention):
            module.attention_dtype = dtype


def cache_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype a KV cache for `model` is allocated in."""
    for module in model.modules():
        if isinstance(module, CausalSelfAttention):
            return module.attention_dtype or default
    return default


@dataclass
class KVCache:
    """Keys and values of every layer, [L, B, H, T, hd], allocated once per run."""

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def allocate(cls, config: GPTConfig, batch: int, length: int, device, dtype) -> KVCache:
        shape = (config.n_layer, batch, config.n_head, length, config.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @property
    def length(self) -> int:
        return self.k.shape[3]


class GPT(nn.Module):
    """Pre-LayerNorm GPT-2 variant; parameter names follow the Suno checkpoints."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.input_vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.output_vocab_size, bias=False)

    def forward(
        self,
        idx: torch.Tensor | None = None,
        *,
        embeds: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        kv_len: int | None = None,
        logit_index: torch.Tensor | None = None,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, V] (or [B, V] at `logit_index` [B], one position per row).

        idx [B, T] token ids, or `embeds` [B, T, D] (the semantic model's merged prefix).
        Without a cache this is a plain causal forward from position 0. With a cache,
        `positions` [B, T] says where each row's tokens sit; keys up to `kv_len` are read;
        `slots` [B] (optional) says which cache rows these B rows are.
        """
        x = self.wte(idx) if embeds is None else embeds
        B, T, _ = x.shape
        if positions is None:
            positions = torch.arange(T, device=x.device).expand(B, T)
        x = x + self.wpe(positions)
        for layer, block in enumerate(self.h):
            if cache is None:
                x = block(x)
            else:
                x = block(
                    x,
                    cache_k=cache.k[layer],
                    cache_v=cache.v[layer],
                    positions=positions,
                    kv_len=kv_len or cache.length,
                    slots=slots,
                )
        if logit_index is not None:
            # Only one position per row is needed in generation: skip the other lm_head rows.
            x = x[torch.arange(B, device=x.device), logit_index]  # [B, D]
        return self.lm_head(self.ln_f(x))
