"""torch.compile (inductor) for decode-step bodies: one switch, and a fallback that says why once.

A decode step is hundreds of small kernels (LayerNorm, GELU, residual adds, sampling); inductor
fuses them into a few dozen, and on CUDA the fused step is then captured in the StepRunner's
own CUDA graphs (decode_step.py), gpt-fast style, so workspaces keep their addresses and
graphs stay one per (batch, key-length bucket). mode="reduce-overhead" is not used: its graph
trees skip graphs whose inputs are mutated, and every step writes its workspace in place.

What a fresh process pays before its first row (`BarkEngine.warmup_s` / `last_warmup_s`,
included in the stage times): one compile per stage (semantic, coarse), made with symbolic key
length and batch size so that later buckets and batch sizes reuse it; then, on CUDA, one graph
capture per (batch size, key-length bucket): 4 semantic and 3 coarse buckets at most. A warm-up
call at full length and the serving batch size pays all of it. Inductor's on-disk cache
(TORCHINDUCTOR_CACHE_DIR) makes the next process's compiles of the same model much cheaper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

BACKEND = "inductor"  # tests swap in a failing backend to check the fallback
_REPORTED: set[str] = set()  # fallback reasons already logged (once per process, not per stage)


def resolve_compile(flag: bool | None, device: torch.device) -> bool:
    """The compile switch: None means on for CUDA, off elsewhere (CPU compiles cost more than they save)."""
    if flag is None:
        return device.type == "cuda"
    if not isinstance(flag, bool):
        raise ValueError(f"compile must be True, False or None (auto: on for CUDA), got {flag!r}")
    return flag


def report_fallback(reason: str, where: str, instead: str) -> None:
    """Log a fallback reason once per process; repeats (the next stage, the next bucket) go to debug."""
    if reason in _REPORTED:
        log.debug("%s decode step: %s; %s", where, reason, instead)
        return
    _REPORTED.add(reason)
    log.warning("decode steps: %s (first in the %s stage); %s", reason, where, instead)


class CompiledStep:
    """A step body run through torch.compile; on any compile error it becomes the eager body for good.

    fullgraph=True: the whole body is one graph, so a compile error surfaces before any of the
    step has run and the eager retry does the step exactly once.
    """

    def __init__(self, body: Callable[[int], None], name: str):
        self.eager = body
        self.name = name
        self.active = True  # False after a fallback
        try:
            # dynamic=True: key length and batch size are symbolic from the first compile, so one
            # compile per stage serves every bucket and batch size (each still gets its own CUDA graph).
            self._compiled = torch.compile(body, backend=BACKEND, fullgraph=True, dynamic=True)
        except Exception as err:  # (e.g. a Python version torch.compile does not support)
            self.fall_back(f"torch.compile is unavailable ({_describe(err)})")

    def __call__(self, kv_len: int) -> None:
        if self.active:
            try:
                self._compiled(kv_len)
                return
            except torch.cuda.OutOfMemoryError:
                raise  # fatal for the batch either way: the caller (and Ray) should see it
            except Exception as err:  # (a compile problem must never cost a run)
                self.fall_back(f"compile failed ({_describe(err)})")
        self.eager(kv_len)

    def fall_back(self, why: str) -> None:
        self.active = False
        report_fallback(why, self.name, "running the steps uncompiled")


def _describe(err: BaseException) -> str:
    """'Type: first line' of the error, and of its root cause (dynamo wraps backend errors)."""
    root = getattr(err, "inner_exception", None) or err
    while root.__cause__ is not None:
        root = root.__cause__
    parts = [err] if root is err else [err, root]
    return " <- ".join(f"{type(e).__name__}: {_first_line(e)}" for e in parts)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "no message"
