"""Stage 2, semantic -> coarse codes: sliding 60-token windows with history, batched over rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bark_model.constants import (
    CODEBOOK_SIZE,
    COARSE_INFER_TOKEN,
    COARSE_OFFSET,
    COARSE_SEMANTIC_PAD_TOKEN,
    COARSE_WINDOW,
    MAX_COARSE_HISTORY,
    MAX_COARSE_INPUT,
    SEMANTIC_TO_COARSE_RATIO,
)
from bark_model.decode_step import DecodeStep
from bark_model.gpt import GPT, KVCache
from bark_model.sampling import RowSampling, sample

MAX_SEMANTIC_IN_WINDOW = int(np.floor(MAX_COARSE_HISTORY / SEMANTIC_TO_COARSE_RATIO))  # 209
WINDOW_PREFIX_MAX = MAX_COARSE_INPUT + 1 + MAX_COARSE_HISTORY  # 887 tokens before generation
COARSE_STREAM = 2


@dataclass(frozen=True)
class CoarseRow:
    semantic_history: np.ndarray  # [Sh] trimmed semantic history (may be empty)
    coarse_history: np.ndarray  # [Ch] flattened, offset coarse history (may be empty)
    semantic: np.ndarray  # [S] the new semantic tokens

    @property
    def n_steps(self) -> int:
        """Coarse tokens to generate (both codebooks, always even)."""
        return int(round(np.floor(len(self.semantic) * SEMANTIC_TO_COARSE_RATIO / 2) * 2))


def flatten_coarse(coarse: np.ndarray) -> np.ndarray:
    """[2, T] codes -> [2T] tokens, frame by frame (cb0, cb1, ...), offset into the coarse vocab."""
    offsets = COARSE_OFFSET + CODEBOOK_SIZE * np.arange(coarse.shape[0])[:, None]
    return (coarse + offsets).T.reshape(-1)


def trim_history(semantic: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official history cut: aligned tails of both, then the last 2 coarse tokens dropped."""
    flat = flatten_coarse(coarse)
    n_sem = min(
        MAX_SEMANTIC_IN_WINDOW,
        len(semantic) - len(semantic) % 2,
        int(np.floor(len(flat) / SEMANTIC_TO_COARSE_RATIO)),
    )
    n_coarse = int(round(n_sem * SEMANTIC_TO_COARSE_RATIO))
    sem_tail = semantic[len(semantic) - n_sem :] if n_sem else semantic[:0]
    coarse_tail = flat[len(flat) - n_coarse :] if n_coarse else flat[:0]
    return sem_tail.astype(np.int64), coarse_tail[:-2].astype(np.int64)


def check_prompt_ratio(semantic: np.ndarray, coarse: np.ndarray, name: str) -> None:
    """The official sanity check that a prompt's coarse length matches its semantic length."""
    if round(coarse.shape[-1] / len(semantic), 1) != round(SEMANTIC_TO_COARSE_RATIO / 2, 1):
        raise ValueError(
            f"voice {name!r}: coarse_prompt has {coarse.shape[-1]} frames for {len(semantic)} semantic "
            f"tokens; a prompt needs about {SEMANTIC_TO_COARSE_RATIO / 2:.2f} frames per token"
        )


def _window_inputs(rows, n_step, device):
    """Each row's window input [sem 256 | infer | last <= 630 coarse], right-padded; and lengths."""
    inputs, lengths = [], []
    for row, coarse_so_far in rows:
        sem_all = np.concatenate([row.semantic_history, row.semantic])
        idx = len(row.semantic_history) + int(round(n_step / SEMANTIC_TO_COARSE_RATIO))
        sem_in = sem_all[max(0, idx - MAX_SEMANTIC_IN_WINDOW) :][:MAX_COARSE_INPUT]
        sem_in = np.pad(sem_in, (0, MAX_COARSE_INPUT - len(sem_in)), constant_values=COARSE_SEMANTIC_PAD_TOKEN)
        hist = coarse_so_far[-MAX_COARSE_HISTORY:]
        seq = np.concatenate([sem_in, [COARSE_INFER_TOKEN], hist])
        inputs.append(seq)
        lengths.append(len(seq))
    width = max(lengths)
    batch = np.full((len(inputs), width), COARSE_SEMANTIC_PAD_TOKEN, dtype=np.int64)
    for i, seq in enumerate(inputs):
        batch[i, : len(seq)] = seq
    return torch.as_tensor(batch, device=device), torch.as_tensor(lengths, device=device), width


@torch.inference_mode()
def generate_coarse(model: GPT, rows: list[CoarseRow], sampling: RowSampling, use_graphs: bool = False) -> list[np.ndarray]:
    """Coarse codes [2, T] per row. All rows advance window by window in lockstep."""
    device = model.wte.weight.device
    B = len(rows)
    n_steps = [row.n_steps for row in rows]
    total = max(n_steps)
    # Host copy of each row's coarse sequence (history + generated so far); window inputs are
    # built from it once per window, so the token loop itself never touches the host.
    coarse_so_far = [row.coarse_history.copy() for row in rows]
    generated = torch.zeros(B, total, dtype=torch.int64, device=device)
    cache = KVCache.allocate(model.config, B, WINDOW_PREFIX_MAX + COARSE_WINDOW, device, model.wte.weight.dtype)
    step_fn = DecodeStep(model, cache, use_graphs)
    for window_start in range(0, total, COARSE_WINDOW):
        tokens, lengths, width = _window_inputs(list(zip(rows, coarse_so_far)), window_start, device)
        positions = torch.arange(width, device=device).expand(B, width)
        logits = model(tokens, positions=positions, cache=cache, kv_len=width, logit_index=lengths - 1)
        window_len = min(COARSE_WINDOW, total - window_start)
        for j in range(window_len):
            n_step = window_start + j
            # Even steps emit codebook 0, odd steps codebook 1, each from its own 1024-wide range.
            lo = COARSE_OFFSET + CODEBOOK_SIZE * (n_step % 2)
            token = sample(logits[:, lo : lo + CODEBOOK_SIZE], sampling, COARSE_STREAM, n_step) + lo
            generated[:, n_step] = token
            if j + 1 == window_len:
                break
            pos = (lengths + j)[:, None]
            logits = step_fn(token[:, None], pos, width + j + 1)
        new = generated[:, window_start : window_start + window_len].cpu().numpy()
        coarse_so_far = [np.concatenate([c, n]) for c, n in zip(coarse_so_far, new)]
    out = generated.cpu().numpy()
    return [_unflatten(out[i, : n_steps[i]]) for i in range(B)]


def _unflatten(tokens: np.ndarray) -> np.ndarray:
    """[2T] offset tokens -> [2, T] codes 0..1023."""
    codes = tokens.reshape(-1, 2).T - COARSE_OFFSET
    codes[1] -= CODEBOOK_SIZE
    return codes
