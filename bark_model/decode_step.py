"""One decode step of a causal GPT, replayed from CUDA graphs on GPU (eager elsewhere).

A step of the large model is ~500 small kernels; launching them one by one from Python costs
more than the math at small batch. On CUDA each (batch, key-length bucket) step is captured
once into a graph with static input/output buffers and replayed after that. The cache is the
same tensor for every replay, so the graph writes into it directly.
"""

from __future__ import annotations

import torch

from bark_model.gpt import GPT, KVCache

KV_BUCKET = 128  # key lengths are rounded up to a multiple of this: few graphs, little waste


class DecodeStep:
    """Callable (token [B,1], positions [B,1], kv_len) -> logits [B, V] for one cache."""

    def __init__(self, model: GPT, cache: KVCache, use_graphs: bool = False):
        self.model, self.cache = model, cache
        self.use_graphs = use_graphs and cache.k.device.type == "cuda"
        self.graphs: dict[int, tuple] = {}
        self.pool = None

    def _eager(self, token, positions, kv_len):
        rows = torch.zeros(token.shape[0], dtype=torch.long, device=token.device)
        return self.model(token, positions=positions, cache=self.cache, kv_len=kv_len, logit_index=rows)

    def __call__(self, token: torch.Tensor, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        if not self.use_graphs:
            return self._eager(token, positions, kv_len)
        bucket = min(self.cache.length, -(-kv_len // KV_BUCKET) * KV_BUCKET)
        entry = self.graphs.get(bucket)
        if entry is None:
            try:
                entry = self.graphs[bucket] = self._capture(token, positions, bucket)
            except Exception as err:  # noqa: BLE001  (a capture problem must never cost a run)
                import warnings

                warnings.warn(f"CUDA graph capture failed ({err}); decoding eagerly", RuntimeWarning)
                self.use_graphs = False
                return self._eager(token, positions, kv_len)
        graph, static_token, static_pos, static_out = entry
        static_token.copy_(token)
        static_pos.copy_(positions)
        graph.replay()
        return static_out

    def _capture(self, token, positions, kv_len):
        static_token, static_pos = token.clone(), positions.clone()
        # Warm up on a side stream (lazy inits, workspace allocations) before capturing; the
        # writes land at the given positions, which the real step overwrites right after.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._eager(static_token, static_pos, kv_len)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self._eager(static_token, static_pos, kv_len)
        return graph, static_token, static_pos, static_out
