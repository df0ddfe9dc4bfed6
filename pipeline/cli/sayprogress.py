"""What `barkpipe say` shows while it works: a progress line per engine stage, and what Ctrl-C has to report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("semantic", "coarse", "fine", "decode")  # the engine's progress(stage, done, total) names
PROC_STAT_START_FIELD = 22  # /proc/self/stat: the process start time, in clock ticks since boot (proc(5))


@dataclass
class Progress:
    """What `say` has written so far, for the line Ctrl-C prints; `launched` is the process start (perf_counter)."""

    launched: float
    planned: int = 0  # files to write (0 until the arguments are checked)
    written: list[Path] = field(default_factory=list)
    streamed: tuple[str, float, int] | None = None  # (where, seconds, chunks) once --stream has written audio

    def describe(self) -> str:
        if self.streamed is not None:
            where, seconds, chunks = self.streamed
            return f"{seconds:.2f} s of audio ({chunks} chunk(s)) written to {where}"
        return f"{len(self.written)} of {self.planned} file(s) written"


def seconds_since_launch() -> float | None:
    """How long this process has run (interpreter start-up and imports included); None where /proc is absent.

    /proc/self/stat's field 22 (PROC_STAT_START_FIELD) is the start time in clock ticks since boot,
    the clock CLOCK_BOOTTIME reads.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": the comm may hold spaces
        ticks = int(fields[PROC_STAT_START_FIELD - 3])  # fields[0] is field 3 (state)
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class StageBars:
    """One progress line per engine stage (semantic, coarse, fine, decode), each counting chunks.

    The next stage's bar opens at 0 as soon as the previous one finishes, so a slow stage shows
    where the time goes instead of a bar that sat at 100 % after the first stage.
    """

    def __init__(self, total: int):
        self.total = total
        self.bars: dict = {}
        self._open(STAGES[0])

    def _open(self, stage: str) -> None:
        from tqdm import tqdm  # imported when `say` runs, so `barkpipe --help` stays fast

        self.bars[stage] = tqdm(total=self.total, unit="chunk", desc=f"{stage:<8}", dynamic_ncols=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in STAGES:
            return  # "rows": the whole call is done
        bar = self.bars.get(stage)
        if bar is None:
            self._open(stage)
            bar = self.bars[stage]
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            following = STAGES.index(stage) + 1
            if following < len(STAGES) and STAGES[following] not in self.bars:
                self._open(STAGES[following])

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
