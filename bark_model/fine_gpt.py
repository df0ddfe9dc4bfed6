"""Bark's non-causal fine model: fills codebooks 2..7 given the codebooks before them."""

from __future__ import annotations

import torch
from torch import nn

from bark_model.config import FineGPTConfig
from bark_model.gpt import Block


class FineGPT(nn.Module):
    """One embedding table per codebook; head j predicts codebook j + n_codes_given."""

    def __init__(self, config: FineGPTConfig):
        super().__init__()
        self.config = config
        self.wtes = nn.ModuleList(
            nn.Embedding(config.input_vocab_size, config.n_embd) for _ in range(config.n_codes_total)
        )
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config, causal=False) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        n_heads = config.n_codes_total - config.n_codes_given
        self.lm_heads = nn.ModuleList(
            nn.Linear(config.n_embd, config.output_vocab_size, bias=False) for _ in range(n_heads)
        )
        self.tie_weights()

    def tie_weights(self) -> None:
        """Head j and table j+1 are one tensor in every checkpoint; keep them one here."""
        for j, head in enumerate(self.lm_heads):
            head.weight = self.wtes[j + self.config.n_codes_given].weight

    def forward(self, pred_idx: int, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T, n_codes_total] -> logits [B, T, V] for codebook `pred_idx`.

        The input sums the embeddings of codebooks 0..pred_idx *inclusive*: the target
        codebook's own entries (pad 1024, or an earlier window's prediction) are seen too.
        """
        if not self.config.n_codes_given <= pred_idx < self.config.n_codes_total:
            raise ValueError(
                f"pred_idx must be in [{self.config.n_codes_given}, {self.config.n_codes_total}), got {pred_idx}"
            )
        B, T, _ = codes.shape
        x = self.wtes[0](codes[:, :, 0])
        for c in range(1, pred_idx + 1):
            x = x + self.wtes[c](codes[:, :, c])
        x = x + self.wpe(torch.arange(T, device=codes.device))
        for block in self.h:
            x = block(x)
        return self.lm_heads[pred_idx - self.config.n_codes_given](self.ln_f(x))
