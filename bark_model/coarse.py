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
    MAX_SEMANTIC_TOKENS,
    MAX_COARSE_HISTORY,
    MAX_COARSE_INPUT,
    SEMANTIC_TO_COARSE_RATIO,
)
from bark_model.decode_step import StepRunner
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


MAX_COARSE_STEPS = int(round(np.floor(MAX_SEMANTIC_TOKENS * SEMANTIC_TO_COARSE_RATIO / 2) * 2))  # 2308


class CoarseWorkspace:
    """Static buffers of the coarse decode loop for one batch size (graph-replay friendly)."""

    def __init__(self, model: GPT, batch: int, sampling: RowSampling, use_graphs: bool):
        device, dtype = model.wte.weight.device, model.wte.weight.dtype
        self.model, self.batch = model, batch
        self.cache = KVCache.allocate(model.config, batch, WINDOW_PREFIX_MAX + COARSE_WINDOW, device, dtype)
        self.logits = torch.zeros(batch, model.config.output_vocab_size, dtype=dtype, device=device)
        self.generated = torch.zeros(batch, MAX_COARSE_STEPS, dtype=torch.int64, device=device)
        self.pos = torch.zeros(batch, dtype=torch.int64, device=device)
        self.n_step = torch.zeros((), dtype=torch.int64, device=device)
        self.codes = torch.arange(CODEBOOK_SIZE, device=device)
        self.params = RowSampling(*(t.clone() for t in sampling.tensors()), sampling.needs_filter, sampling.all_greedy)
        self.runner = StepRunner(self._body, device, use_graphs, self.cache.length)

    def fits(self, batch: int, sampling: RowSampling) -> bool:
        p = self.params
        return self.batch == batch and (p.needs_filter, p.all_greedy) == (sampling.needs_filter, sampling.all_greedy)

    def _body(self, kv_len: int) -> None:
        """Sample this step's code (codebook 0 on even steps, 1 on odd), then run the forward."""
        lo = COARSE_OFFSET + CODEBOOK_SIZE * (self.n_step % 2)  # [] on the device: no host branch
        relevant = self.logits.index_select(1, lo + self.codes)  # [B, 1024]
        token = sample(relevant, self.params, COARSE_STREAM, self.n_step) + lo
        self.generated.index_copy_(1, self.n_step.view(1), token[:, None])
        rows = torch.zeros_like(token)
        self.logits.copy_(self.model(token[:, None], positions=self.pos[:, None], cache=self.cache, kv_len=kv_len, logit_index=rows))
        self.pos += 1
        self.n_step += 1


@torch.inference_mode()
def generate_coarse(
    model: GPT, rows: list[CoarseRow], sampling: RowSampling, use_graphs: bool = False, workspaces: dict | None = None
) -> list[np.ndarray]:
    """Coarse codes [2, T] per row. All rows advance window by window in lockstep."""
    B = len(rows)
    n_steps = [row.n_steps for row in rows]
    total = max(n_steps)
    ws = _workspace(model, B, sampling, use_graphs, workspaces)
    # Host copy of each row's coarse sequence (history + generated so far); window inputs are
    # built from it once per window, so the token loop itself never touches the host.
    coarse_so_far = [row.coarse_history.copy() for row in rows]
    for window_start in range(0, total, COARSE_WINDOW):
        tokens, lengths, width = _window_inputs(list(zip(rows, coarse_so_far)), window_start, ws.logits.device)
        positions = torch.arange(width, device=tokens.device).expand(B, width)
        logits = model(tokens, positions=positions, cache=ws.cache, kv_len=width, logit_index=lengths - 1)
        ws.logits.copy_(logits)
        ws.pos.copy_(lengths)
        ws.n_step.fill_(window_start)
        window_len = min(COARSE_WINDOW, total - window_start)
        for j in range(window_len):
            ws.runner(width + j + 1)
        new = ws.generated[:, window_start : window_start + window_len].cpu().numpy()
        coarse_so_far = [np.concatenate([c, n]) for c, n in zip(coarse_so_far, new)]
    out = ws.generated[:, :total].cpu().numpy()
    return [_unflatten(out[i, : n_steps[i]]) for i in range(B)]


def _workspace(model, batch, sampling, use_graphs, workspaces) -> CoarseWorkspace:
    if workspaces is None:
        return CoarseWorkspace(model, batch, sampling, use_graphs)
    key = "coarse"  # one per stage, replaced when the batch size changes (bounded memory)
    ws = workspaces.get(key)
    if ws is None or not ws.fits(batch, sampling):
        ws = workspaces[key] = CoarseWorkspace(model, batch, sampling, use_graphs)
    for mine, theirs in zip(ws.params.tensors(), sampling.tensors()):
        mine.copy_(theirs)
    return ws


def _unflatten(tokens: np.ndarray) -> np.ndarray:
    """[2T] offset tokens -> [2, T] codes 0..1023."""
    codes = tokens.reshape(-1, 2).T - COARSE_OFFSET
    codes[1] -= CODEBOOK_SIZE
    return codes
