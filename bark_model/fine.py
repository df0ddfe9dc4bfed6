"""Stage 3, coarse -> fine codes: overlapping 1024-frame windows, batched over rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bark_model.constants import CODEBOOK_SIZE, FINE_HISTORY, FINE_PAD_CODE, FINE_STEP, FINE_WINDOW, N_FINE_CODEBOOKS
from bark_model.fine_gpt import FineGPT
from bark_model.sampling import RowSampling, sample

FINE_STREAM = 3


@dataclass(frozen=True)
class FineRow:
    coarse: np.ndarray  # [n_coarse, T] codes
    history: np.ndarray | None  # [8, Th] fine prompt or None


@dataclass
class _Plan:
    """One row's working array [L, 8] and the official window arithmetic for it."""

    codes: np.ndarray
    n_hist: int
    n_pad: int
    n_frames: int
    n_loops: int

    def window(self, loop: int) -> tuple[int, int]:
        """(start, rel): window start in the array and the first position it fills."""
        length = len(self.codes)
        start = min(loop * FINE_STEP, length - FINE_WINDOW)
        fill = min(self.n_hist + loop * FINE_STEP, length - FINE_STEP)
        return start, fill - start


def _plan(row: FineRow) -> _Plan:
    n_coarse, n_frames = row.coarse.shape
    codes = np.full((N_FINE_CODEBOOKS, n_frames), FINE_PAD_CODE, dtype=np.int64)
    codes[:n_coarse] = row.coarse
    n_hist = 0
    if row.history is not None:
        hist = row.history[:, -FINE_HISTORY:].astype(np.int64)
        codes = np.concatenate([hist, codes], axis=1)
        n_hist = hist.shape[1]
    n_pad = max(0, FINE_WINDOW - codes.shape[1])
    codes = np.pad(codes, ((0, 0), (0, n_pad)), constant_values=FINE_PAD_CODE)
    n_loops = max(0, int(np.ceil((n_frames - (FINE_WINDOW - n_hist)) / FINE_STEP))) + 1
    return _Plan(codes.T.copy(), n_hist, n_pad, n_frames, n_loops)


def _upload(plans: list[_Plan], device) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Working arrays [B, L, 8] (right-padded), rows per loop, and every loop's (row, start, rel) [N, 3].

    All of it goes to the device once, so the windows follow each other there without a round
    trip through the host.
    """
    codes = np.full((len(plans), max(len(p.codes) for p in plans), N_FINE_CODEBOOKS), FINE_PAD_CODE, dtype=np.int64)
    entries = []
    for loop in range(max(p.n_loops for p in plans)):
        entries.append([(i, *p.window(loop)) for i, p in enumerate(plans) if loop < p.n_loops])
    for i, p in enumerate(plans):
        codes[i, : len(p.codes)] = p.codes
    table = np.array([entry for loop in entries for entry in loop], dtype=np.int64).reshape(-1, 3)
    return torch.as_tensor(codes, device=device), [len(loop) for loop in entries], torch.as_tensor(table, device=device)


@torch.inference_mode()
def generate_fine(model: FineGPT, rows: list[FineRow], sampling: RowSampling) -> list[np.ndarray]:
    """Fine codes [8, T] per row; codebooks given by the coarse stage are kept as they are."""
    device = model.wpe.weight.device
    n_given = {row.coarse.shape[0] for row in rows}
    if len(n_given) != 1:
        raise ValueError(f"all rows of a batch need the same number of coarse codebooks, got {sorted(n_given)}")
    n_coarse = n_given.pop()
    plans = [_plan(row) for row in rows]
    codes_dev, loops, table = _upload(plans, device)
    positions = torch.arange(FINE_WINDOW, device=device)
    first = 0
    for loop, n_active in enumerate(loops):
        active, start, rel = table[first : first + n_active].unbind(1)  # [B'] each
        first += n_active
        frames = start[:, None] + positions[None, :]  # [B', 1024] array index of each window position
        window = codes_dev[active[:, None], frames]  # [B', 1024, 8]
        fill = positions[None, :] >= rel[:, None]  # [B', 1024] positions this window writes
        # Positions are sampled as rows: each row's parameters repeated for its 1024 positions.
        position_sampling = sampling.select(active.repeat_interleave(FINE_WINDOW))
        for codebook in range(n_coarse, N_FINE_CODEBOOKS):
            logits = model(codebook, window)[:, :, :CODEBOOK_SIZE]  # [B', 1024, 1024]
            flat = logits.reshape(-1, CODEBOOK_SIZE)
            # One noise stream per (loop, codebook); positions index it, so draws stay per row.
            step = (loop * N_FINE_CODEBOOKS + codebook) * FINE_WINDOW + positions.repeat(n_active)
            pred = sample(flat, position_sampling, FINE_STREAM, step).view(n_active, FINE_WINDOW)
            window[:, :, codebook] = torch.where(fill, pred, window[:, :, codebook])
        codes_dev[active[:, None], frames] = window
    result = codes_dev.cpu().numpy()  # the one copy back, after the last window
    out = []
    for i, p in enumerate(plans):
        codes = result[i, p.n_hist : len(p.codes) - p.n_pad].T  # [8, T]
        assert codes.shape[1] == p.n_frames, "fine window arithmetic lost frames"
        out.append(codes)
    return out
