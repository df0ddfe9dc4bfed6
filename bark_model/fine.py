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


@torch.inference_mode()
def generate_fine(model: FineGPT, rows: list[FineRow], sampling: RowSampling) -> list[np.ndarray]:
    """Fine codes [8, T] per row; codebooks given by the coarse stage are kept as they are."""
    device = model.wpe.weight.device
    n_given = {row.coarse.shape[0] for row in rows}
    if len(n_given) != 1:
        raise ValueError(f"all rows of a batch need the same number of coarse codebooks, got {sorted(n_given)}")
    n_coarse = n_given.pop()
    plans = [_plan(row) for row in rows]
    positions = torch.arange(FINE_WINDOW, device=device)
    for loop in range(max(p.n_loops for p in plans)):
        active = [i for i, p in enumerate(plans) if loop < p.n_loops]
        spans = [plans[i].window(loop) for i in active]
        window = torch.as_tensor(
            np.stack([plans[i].codes[s : s + FINE_WINDOW] for i, (s, _) in zip(active, spans)]), device=device
        )  # [B', 1024, 8]
        rel = torch.as_tensor([r for _, r in spans], device=device)
        fill = positions[None, :] >= rel[:, None]  # [B', 1024] positions this window writes
        # Positions are sampled as rows: each row's parameters repeated for its 1024 positions.
        position_sampling = sampling.select(torch.as_tensor(active, device=device).repeat_interleave(FINE_WINDOW))
        for codebook in range(n_coarse, N_FINE_CODEBOOKS):
            logits = model(codebook, window)[:, :, :CODEBOOK_SIZE]  # [B', 1024, 1024]
            flat = logits.reshape(-1, CODEBOOK_SIZE)
            # One noise stream per (loop, codebook); positions index it, so draws stay per row.
            step = (loop * N_FINE_CODEBOOKS + codebook) * FINE_WINDOW + positions.repeat(len(active))
            pred = sample(flat, position_sampling, FINE_STREAM, step).view(len(active), FINE_WINDOW)
            window[:, :, codebook] = torch.where(fill, pred, window[:, :, codebook])
        result = window.cpu().numpy()
        for k, (i, (start, _)) in enumerate(zip(active, spans)):
            plans[i].codes[start : start + FINE_WINDOW] = result[k]
    out = []
    for p in plans:
        codes = p.codes.T[:, p.n_hist : p.codes.shape[0] - p.n_pad]
        assert codes.shape[1] == p.n_frames, "fine window arithmetic lost frames"
        out.append(codes)
    return out

