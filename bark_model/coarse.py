"""Stage 2, semantic -> coarse codes: sliding 60-token windows with history, batched over rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bark_model.constants import (
    COARSE_INFER_TOKEN,
    COARSE_OFFSET,
    COARSE_SEMANTIC_PAD_TOKEN,
    COARSE_WINDOW,
    CODEBOOK_SIZE,
    MAX_COARSE_HISTORY,
    MAX_COARSE_INPUT,
    MAX_SEMANTIC_TOKENS,
    SEMANTIC_TO_COARSE_RATIO,
)
from bark_model.decode_step import StepRunner
from bark_model.gpt import GPT, KVCache, cache_dtype
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


def _semantic_slots(row: CoarseRow, n_step: int) -> np.ndarray:
    """The 256 semantic slots of the window starting at coarse step n_step (official alignment), padded."""
    sem_all = np.concatenate([row.semantic_history, row.semantic])
    idx = len(row.semantic_history) + int(round(n_step / SEMANTIC_TO_COARSE_RATIO))
    sem_in = sem_all[max(0, idx - MAX_SEMANTIC_IN_WINDOW) :][:MAX_COARSE_INPUT]
    return np.pad(sem_in, (0, MAX_COARSE_INPUT - len(sem_in)), constant_values=COARSE_SEMANTIC_PAD_TOKEN)


@dataclass
class _Windows:
    """Every window's input, planned on the host once and assembled on the device window by window.

    A window is [sem 256 | infer | last <= 630 coarse tokens], right-padded. The semantic slots
    and each row's history length depend only on lengths the host knows; the history tokens are
    the row's prompt followed by what the loop generated, gathered on the device. So no window
    waits for the previous one to reach the host (one upload before the first window).
    """

    starts: list[int]  # coarse step at which each window starts
    sem: torch.Tensor  # [W, B, 256] semantic slots per window
    hist_len: np.ndarray  # [W, B] history tokens each window sees (host copy: widths)
    hist_len_dev: torch.Tensor  # [W, B] the same on the device
    prompt: torch.Tensor  # [B, Hp] coarse prompt histories, right-aligned (left-padded)


def _plan_windows(rows: list[CoarseRow], total: int, device) -> _Windows:
    starts = list(range(0, total, COARSE_WINDOW))
    n_prompt = np.array([len(row.coarse_history) for row in rows])
    prompt = np.full((len(rows), int(n_prompt.max(initial=0))), COARSE_SEMANTIC_PAD_TOKEN, dtype=np.int64)
    for i, row in enumerate(rows):
        prompt[i, prompt.shape[1] - n_prompt[i] :] = row.coarse_history
    sem = np.array([[_semantic_slots(row, n_step) for row in rows] for n_step in starts], dtype=np.int64)
    sem = sem.reshape(len(starts), len(rows), MAX_COARSE_INPUT)
    hist_len = np.minimum(MAX_COARSE_HISTORY, n_prompt[None, :] + np.array(starts, dtype=np.int64)[:, None])
    hist_len = hist_len.reshape(len(starts), len(rows))
    upload = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return _Windows(starts, upload(sem), hist_len, upload(hist_len), upload(prompt))


def _window_tokens(plan: _Windows, w: int, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Window w's input [B, width] on the device, each row's length [B], and the width."""
    n_step, h_host, h = plan.starts[w], plan.hist_len[w], plan.hist_len_dev[w]
    B = len(h_host)
    width = MAX_COARSE_INPUT + 1 + int(h_host.max())
    # Prompt then generated: every row's coarse sequence so far ends at the last column.
    so_far = torch.cat([plan.prompt, generated[:, :n_step]], dim=1)  # [B, Hp + n_step]
    j = torch.arange(int(h_host.max()), device=h.device)[None, :]
    src = (so_far.shape[1] - h[:, None] + j).clamp(max=max(so_far.shape[1] - 1, 0))  # row i's last h_i tokens
    hist = so_far.gather(1, src) if so_far.shape[1] else src  # (no history at all: nothing to gather)
    hist = torch.where(j < h[:, None], hist, COARSE_SEMANTIC_PAD_TOKEN)
    infer = torch.full((B, 1), COARSE_INFER_TOKEN, dtype=torch.int64, device=h.device)
    return torch.cat([plan.sem[w], infer, hist], dim=1), MAX_COARSE_INPUT + 1 + h, width


MAX_COARSE_STEPS = int(round(np.floor(MAX_SEMANTIC_TOKENS * SEMANTIC_TO_COARSE_RATIO / 2) * 2))  # 2308


class CoarseWorkspace:
    """Static buffers of the coarse decode loop for one batch size (graph-replay friendly)."""

    def __init__(self, model: GPT, batch: int, sampling: RowSampling, use_graphs: bool, compile: bool = False):
        device, dtype = model.wte.weight.device, model.wte.weight.dtype
        self.model, self.batch = model, batch
        self.cache = KVCache.allocate(
            model.config, batch, WINDOW_PREFIX_MAX + COARSE_WINDOW, device, cache_dtype(model, dtype)
        )
        self.logits = torch.zeros(batch, model.config.output_vocab_size, dtype=dtype, device=device)
        self.generated = torch.zeros(batch, MAX_COARSE_STEPS, dtype=torch.int64, device=device)
        self.pos = torch.zeros(batch, dtype=torch.int64, device=device)
        self.n_step = torch.zeros((), dtype=torch.int64, device=device)
        self.codes = torch.arange(CODEBOOK_SIZE, device=device)
        temperature, top_k, top_p, seeds = (t.clone() for t in sampling.tensors())
        self.params = RowSampling(temperature, top_k, top_p, seeds, sampling.needs_filter, sampling.all_greedy)
        self.runner = StepRunner(self._body, device, use_graphs, self.cache.length, compile, "coarse")
        self.compile = compile

    def fits(self, batch: int, sampling: RowSampling, compile: bool) -> bool:
        p = self.params
        kind = (p.needs_filter, p.all_greedy, self.compile)
        return self.batch == batch and kind == (sampling.needs_filter, sampling.all_greedy, compile)

    def _body(self, kv_len: int) -> None:
        """Sample this step's code (codebook 0 on even steps, 1 on odd), then run the forward."""
        lo = COARSE_OFFSET + CODEBOOK_SIZE * (self.n_step % 2)  # [] on the device: no host branch
        relevant = self.logits.index_select(1, lo + self.codes)  # [B, 1024]
        token = sample(relevant, self.params, COARSE_STREAM, self.n_step) + lo
        self.generated.index_copy_(1, self.n_step.view(1), token[:, None])
        rows = torch.zeros_like(token)
        self.logits.copy_(
            self.model(token[:, None], positions=self.pos[:, None], cache=self.cache, kv_len=kv_len, logit_index=rows)
        )
        self.pos += 1
        self.n_step += 1


@torch.inference_mode()
def generate_coarse(
    model: GPT, rows: list[CoarseRow], sampling: RowSampling, use_graphs: bool = False, workspaces: dict | None = None,
    compile: bool = False,
) -> list[np.ndarray]:  # fmt: skip
    """Coarse codes [2, T] per row. All rows advance window by window in lockstep (`compile`: see compile.py)."""
    B = len(rows)
    n_steps = [row.n_steps for row in rows]
    total = max(n_steps)
    ws = _workspace(model, B, sampling, use_graphs, compile, workspaces)
    plan = _plan_windows(rows, total, ws.logits.device)
    for w, window_start in enumerate(plan.starts):
        tokens, lengths, width = _window_tokens(plan, w, ws.generated)
        positions = torch.arange(width, device=tokens.device).expand(B, width)
        logits = model(tokens, positions=positions, cache=ws.cache, kv_len=width, logit_index=lengths - 1)
        ws.logits.copy_(logits)
        ws.pos.copy_(lengths)
        ws.n_step.fill_(window_start)
        window_len = min(COARSE_WINDOW, total - window_start)
        for j in range(window_len):
            ws.runner(width + j + 1)
    out = ws.generated[:, :total].cpu().numpy()
    return [_unflatten(out[i, : n_steps[i]]) for i in range(B)]


def _workspace(model, batch, sampling, use_graphs, compile, workspaces) -> CoarseWorkspace:
    if workspaces is None:
        return CoarseWorkspace(model, batch, sampling, use_graphs, compile)
    key = "coarse"  # one per stage, replaced when the batch size changes (bounded memory)
    ws = workspaces.get(key)
    if ws is None or not ws.fits(batch, sampling, compile):
        ws = workspaces[key] = CoarseWorkspace(model, batch, sampling, use_graphs, compile)
    for mine, theirs in zip(ws.params.tensors(), sampling.tensors(), strict=False):
        mine.copy_(theirs)
    return ws


def _unflatten(tokens: np.ndarray) -> np.ndarray:
    """[2T] offset tokens -> [2, T] codes 0..1023."""
    codes = tokens.reshape(-1, 2).T - COARSE_OFFSET
    codes[1] -= CODEBOOK_SIZE
    return codes
