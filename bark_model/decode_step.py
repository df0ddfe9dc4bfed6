"""Run a decode-loop body eagerly, compiled, and/or replayed from CUDA graphs per key-length bucket.

A step of the large model is ~500 small kernels plus ~80 for sampling and bookkeeping;
launching them one by one from Python costs far more than the math at small batch. With
compile on, inductor fuses the body first (compile.py). On CUDA the whole body (sampling,
bookkeeping and the forward pass) is then captured once per key-length bucket and replayed.
The body only works in place on tensors it owns (static addresses), so a replay is exactly
the step. Workspaces live as long as the engine, so graphs are captured once per (batch,
bucket), not once per call. Fallbacks go one way: compiled graphs -> eager graphs -> eager.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from bark_model.compile import CompiledStep, report_fallback

KV_BUCKET = 256  # key lengths round up to a multiple of this: few graphs and compiles, little wasted reading


class StepRunner:
    """Calls body(kv_len): eagerly with the exact length, or bucketed (compiled and/or graph-replayed)."""

    def __init__(self, body: Callable[[int], None], device: torch.device, use_graphs: bool, max_len: int,
                 compile: bool = False, name: str = "decode"):  # fmt: skip
        self.device = device
        self.use_graphs = use_graphs and device.type == "cuda"
        self.step = CompiledStep(body, name) if compile else None
        self.eager = body
        self.max_len = max_len
        self.name = name
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.seen: set[int] = set()  # buckets run at least once (compiled for, or captured)
        self.pool: Any = None  # the CUDA graphs' shared memory pool, made at the first capture
        self.warmup_s = 0.0  # time spent compiling and capturing (first step at each bucket)
        self._error = ""  # why the last capture failed

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False when off, or after a fallback)."""
        return self.step is not None and self.step.active

    def _body(self, kv_len: int) -> None:
        if self.step is not None and self.step.active:
            self.step(kv_len)
        else:
            self.eager(kv_len)

    def __call__(self, kv_len: int) -> None:
        if not (self.use_graphs or self.compiled):
            self.eager(kv_len)
            return
        # A bucketed length: one compiled graph / CUDA graph serves every step in the bucket.
        # Keys past a row's position are masked, so the extra keys change nothing but time.
        bucket = min(self.max_len, -(-kv_len // KV_BUCKET) * KV_BUCKET)
        graph = self.graphs.get(bucket)
        if graph is not None:
            graph.replay()
            return
        if bucket in self.seen and not self.use_graphs:
            self._body(bucket)
            return
        start = time.perf_counter()
        # First time at this bucket: the real step runs (which compiles, and warms up cuBLAS and
        # the allocator), then, on CUDA, the same body is recorded, not run, for later replays.
        self._body(bucket)
        if self.use_graphs:
            self._capture(bucket)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seen.add(bucket)
        self.warmup_s += time.perf_counter() - start

    def _capture(self, bucket: int) -> None:
        graph = self._record(bucket)
        if graph is None and self.step is not None and self.step.active:
            self.step.fall_back(f"CUDA graph capture of the compiled step failed ({self._error})")
            graph = self._record(bucket)
        if graph is None:
            report_fallback(f"CUDA graph capture failed ({self._error})", self.name, "decoding eagerly")
            self.use_graphs = False
            self.graphs.clear()  # a mix of compiled and eager graphs would be fine, but keep one kind
            return
        self.graphs[bucket] = graph

    def _record(self, bucket: int) -> torch.cuda.CUDAGraph | None:
        try:
            graph = torch.cuda.CUDAGraph()
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self.pool):
                self._body(bucket)
            return graph
        except Exception as err:  # (a capture problem must never cost a run)
            lines = str(err).strip().splitlines()
            self._error = f"{type(err).__name__}: {lines[0][:200] if lines else 'no message'}"
            return None
