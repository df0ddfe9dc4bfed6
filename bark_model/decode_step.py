"""Run a decode-loop body eagerly, or replay it from CUDA graphs captured per key-length bucket.

A step of the large model is ~500 small kernels plus ~80 for sampling and bookkeeping;
launching them one by one from Python costs far more than the math at small batch. On CUDA
the whole body (sampling, bookkeeping and the forward pass) is captured once per key-length
bucket and replayed. The body only works in place on tensors it owns (static addresses), so
a replay is exactly the eager step. Workspaces live as long as the engine, so graphs are
captured once per (batch, bucket), not once per call.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

KV_BUCKET = 256  # key lengths round up to a multiple of this: few graphs, little wasted reading


class StepRunner:
    """Calls body(kv_len) — eagerly with the exact length, or as a replayed CUDA graph."""

    def __init__(self, body: Callable[[int], None], device: torch.device, use_graphs: bool, max_len: int):
        self.body = body
        self.use_graphs = use_graphs and device.type == "cuda"
        self.max_len = max_len
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None

    def __call__(self, kv_len: int) -> None:
        if not self.use_graphs:
            self.body(kv_len)
            return
        bucket = min(self.max_len, -(-kv_len // KV_BUCKET) * KV_BUCKET)
        graph = self.graphs.get(bucket)
        if graph is not None:
            graph.replay()
            return
        # First time at this bucket: the real step runs eagerly (which also warms up cuBLAS and
        # the allocator), then the same body is recorded, not run, for later replays.
        self.body(bucket)
        try:
            graph = torch.cuda.CUDAGraph()
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self.pool):
                self.body(bucket)
            self.graphs[bucket] = graph
        except Exception as err:  # noqa: BLE001  (a capture problem must never cost a run)
            warnings.warn(f"CUDA graph capture failed ({err}); decoding eagerly", RuntimeWarning)
            self.use_graphs = False
