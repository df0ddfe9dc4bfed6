"""Pipeline efficiency: the real stages on local Ray around an engine of known speed.

The stand-in engine sleeps as long as a real engine of `--rate` audio-s/s would take and hands
back audio from a precomputed buffer, so it uses no CPU: whatever keeps the pipeline below that
rate is the pipeline's own cost. Efficiency = pipeline audio-s/s / (rate x actors), measured from
the engine's first call to the last commit (so Ray's start and the model load are left out; the
whole-run figure is printed beside it). `--engine tiny` runs the real tiny random-weights engine on
examples/book.txt instead, where the figure that matters is how busy the engine was.

    python bench/pipeline_efficiency.py                     # stand-in, 100 audio-s/s, one actor
    python bench/pipeline_efficiency.py --code /tmp/old     # the same through another checkout's pipeline
    python bench/pipeline_efficiency.py --engine tiny       # the real tiny engine on a 3-chapter book

`--code DIR` runs DIR's `pipeline` package instead of this one (DIR's load_engine must hand out
StandInEngine.from_spec($BENCH_STANDIN) for the stand-in: older checkouts take no engine factory).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out" / "efficiency"
SR = 24_000
# Words of 1-4 syllables, so sentences read like prose to the segmenter's speaking-rate estimate.
WORDS = ("the", "river", "morning", "quietly", "lantern", "over", "remember", "a", "window", "carried",
         "silver", "and", "beneath", "travelers", "story", "of", "gathered", "mountain", "slowly", "light")
FINISH_STEPS = ("trim", "join", "loudness", "encode", "write")


def book_text(minutes: float, seed: int) -> str:
    """Prose of about `minutes` spoken minutes: sentences of 4-30 words, a paragraph every 3-8 sentences."""
    from pipeline.text.segment import estimate_seconds

    rng = np.random.default_rng(seed)
    paragraphs, seconds = [], 0.0
    while seconds < minutes * 60:
        sentences = []
        for _ in range(int(rng.integers(3, 9))):
            words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(4, 31)))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
        paragraphs.append(" ".join(sentences))
        seconds += estimate_seconds(paragraphs[-1])
    return "\n\n".join(paragraphs)


class StandInResult:
    def __init__(self, audio: np.ndarray):
        self.audio, self.sample_rate = audio, SR
        self.dropped_text_tokens = 0
        self.timings = {"standin": 0.0}

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SR


class StandInEngine:
    """Produces audio at `rate` audio-s/s by sleeping; the audio is a view of one precomputed buffer."""

    model_info = {"name": "stand-in", "checksum": "sha256:stand-in"}

    def __init__(self, rate: float, trace_dir: str | None = None):
        self.rate, self.trace_dir = rate, trace_dir
        rng = np.random.default_rng(0)
        n = 20 * SR  # longer than any chunk (segment.max_seconds is 14)
        envelope = 0.5 + 0.5 * np.sin(np.arange(n) * 2 * np.pi * 4 / SR)  # ~4 syllables a second
        self.buffer = (0.2 * envelope * rng.standard_normal(n)).astype(np.float32)
        self.buffer[: SR // 4] *= 0.001  # a quiet lead-in and tail for trimming to find
        self.buffer[-SR // 4:] *= 0.001

    @classmethod
    def from_spec(cls, spec: str) -> StandInEngine:
        """'rate=100,trace=/dir' (how an older checkout's load_engine builds it from $BENCH_STANDIN)."""
        parts = dict(p.split("=", 1) for p in spec.split(","))
        return cls(float(parts["rate"]), parts.get("trace"))

    def load_voice(self, voice):
        return voice

    def count_text_tokens(self, text: str) -> int:  # older checkouts count tokens through the engine
        from pipeline.text.segment import estimate_tokens

        return estimate_tokens(text)

    def auto_batch_size(self) -> int:
        return 8

    def generate(self, requests, batch_size=None, progress=None):
        from pipeline.text.segment import estimate_seconds

        lengths = [min(estimate_seconds(r.text), r.max_duration_s or np.inf, len(self.buffer) / SR - 0.5)
                   for r in requests]  # fmt: skip
        start = time.time()
        time.sleep(sum(lengths) / self.rate)
        if self.trace_dir:
            with open(Path(self.trace_dir) / f"engine-{os.getpid()}.txt", "a") as f:
                f.write(f"{start} {time.time()} {sum(lengths)}\n")
        ends = [max(SR // 2, int(s * SR)) for s in lengths]
        return [StandInResult(np.concatenate([self.buffer[: e - SR // 4], self.buffer[-SR // 4:]])) for e in ends]


def busy_intervals(trace_dir: Path) -> list[tuple[float, float]]:
    rows = [line.split() for f in glob.glob(str(trace_dir / "engine-*.txt")) for line in open(f)]
    return sorted((float(a), float(b)) for a, b, _ in rows)


def run_once(args) -> dict:
    """One pipeline run in this process (its own local Ray); returns the measures."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from pipeline.config import validate_config
    from pipeline.batch.run import run

    work = Path(args.work)
    trace = work / "trace"
    trace.mkdir(parents=True, exist_ok=True)
    for f in trace.glob("*"):
        f.unlink()
    if args.engine == "standin":
        rows = [{"id": f"row{i:03d}", "text": book_text(args.row_minutes, i)} for i in range(args.rows)]
        pq.write_table(pa.Table.from_pylist(rows), work / "manifest.parquet")
        manifest, weights = work / "manifest.parquet", work / "weights"
        weights.mkdir(exist_ok=True)  # older checkouts insist on a folder; the stand-in reads nothing
        os.environ["BENCH_STANDIN"] = f"rate={args.rate},trace={trace}"
    else:
        manifest, weights = work / "book.parquet", Path(args.weights)
    cfg = validate_config({
        "input": {"path": str(manifest)},
        "output": {"path": str(work / "run"), "overwrite": True, "format": args.format},
        "model": {"weights": str(weights), "device": "cpu"},
        "generation": {"max_duration": args.max_duration},
        "segment": {"loudness_lufs": args.loudness},
        "compute": {"actors": args.actors, "cpus_per_actor": 0.5, "batch_size": args.batch, "window_rows": args.window},
    })  # fmt: skip
    ray.init(include_dashboard=False, object_store_memory=1024 * 2**20, log_to_driver=False)
    kwargs = {}
    if args.engine == "standin" and not args.code:
        from functools import partial

        kwargs["engine_factory"] = partial(StandInEngine, args.rate, str(trace))
    load_before = os.getloadavg()[0]
    cpu_before = _cluster_cpu_s()
    summary = run(cfg, progress=False, **kwargs)
    end = time.time()
    cpu_used = _cluster_cpu_s() - cpu_before
    ray.shutdown()
    r = summary["this_run"]
    result = {"code": args.code or "this checkout", "engine": args.engine, "rows": r["rows"], "errors": r["errors"],
              "audio_s": r["audio_s"], "wall_s": r["wall_s"], "engine_s": r["engine_s"],
              "cpu_s_all_processes": round(cpu_used, 1),
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if args.engine == "standin":
        spans = busy_intervals(trace)
        steady = end - spans[0][0]
        target = args.rate * args.actors
        result |= {"rate_per_actor": args.rate, "steady_s": round(steady, 2),
                   "efficiency": round(r["audio_s"] / steady / target, 3),
                   "efficiency_whole_run": round(r["audio_s"] / r["wall_s"] / target, 3),
                   "engine_busy": round(sum(b - a for a, b in spans) / steady / args.actors, 3)}
    else:
        result["engine_busy"] = round(r["engine_s"] / r["wall_s"] / args.actors, 3)
    result["finish_ms_per_audio_s"] = finish_costs(work / "run")
    return result


def _cluster_cpu_s() -> float:
    """CPU seconds used so far by this user's processes (driver, raylet, workers): /proc accounting."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            if os.stat(stat).st_uid != os.getuid():
                continue
            fields = open(stat).read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total


def finish_costs(out: Path) -> dict:
    """Milliseconds per audio-second of each finishing step, from the rows' metadata timings."""
    import pyarrow.parquet as pq

    rows = [r for p in (out / "metadata").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    audio = sum(r["duration_s"] for r in rows) or 1.0
    steps: dict[str, float] = {}
    for r in rows:
        for step, seconds in r["timings"]:
            steps[step] = steps.get(step, 0.0) + seconds
    keep = [s for s in (*FINISH_STEPS, "assemble") if s in steps]
    return {s: round(1000 * steps[s] / audio, 2) for s in keep}


def finishing_cpu(seconds: float = 240.0, loudness: float | None = -20.0, fmt: str = "flac") -> dict:
    """CPU ms per audio-second of each finishing step on one long row of 12 s chunks (this process only)."""
    from pipeline.config import SegmentConfig
    from pipeline.batch.stages.finish import assemble
    from pipeline.batch.stages.rows import to_pcm16

    engine = StandInEngine(100.0)
    n = int(seconds // 12)
    pcm = [to_pcm16(engine.buffer[: 12 * SR]) for _ in range(n)]
    breaks = [i % 4 == 3 for i in range(n)]
    timings: dict[str, float] = {}
    segment = SegmentConfig(loudness_lufs=loudness)
    start = time.thread_time()
    for _ in range(3):
        assemble(pcm, SR, breaks, segment, fmt, timings)
    cpu = time.thread_time() - start
    audio = 3 * n * 12.0
    return {**{k: round(1000 * v / audio, 2) for k, v in timings.items()}, "total_cpu": round(1000 * cpu / audio, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("standin", "tiny"), default="standin")
    parser.add_argument("--code", default="", help="another checkout whose pipeline/ to run (see the docstring)")
    parser.add_argument("--rate", type=float, default=100.0, help="stand-in audio-s/s per actor")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--row-minutes", type=float, default=5.0, help="spoken length of each stand-in row")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--window", type=int, default=1, help="compute.window_rows")
    parser.add_argument("--batch", type=int, default=16, help="compute.batch_size")
    parser.add_argument("--format", default="flac")
    parser.add_argument("--loudness", type=float, default=-20.0, help="segment.loudness_lufs")
    parser.add_argument("--max-duration", type=float, default=None, help="generation.max_duration")
    parser.add_argument("--weights", default="", help="tiny engine weights (made if missing)")
    parser.add_argument("--work", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_once(args)))
        return
    name = f"{args.engine}-{'old' if args.code else 'new'}"
    args.work = args.work or str(OUT / name)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.engine == "tiny":
        setup_book(args)
    result = json.loads(child(args).rsplit("RESULT ", 1)[1])
    if not args.code:
        result["finishing_cpu_ms_per_audio_s"] = finishing_cpu(loudness=args.loudness, fmt=args.format)
    (Path(args.work) / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def setup_book(args) -> None:
    """Tiny random weights and a one-row-per-chapter manifest of examples/book.txt."""
    barkpipe = str(Path(sys.executable).parent / "barkpipe")
    args.weights = args.weights or str(OUT / "tiny")
    if not Path(args.weights).exists():
        make = [barkpipe, "weights", "make-random", "--size", "tiny", "--layout", "suno", args.weights]
        subprocess.run(make, check=True)
    subprocess.run([barkpipe, "manifest", "from-text", str(REPO / "examples" / "book.txt"),
                    "--out", str(Path(args.work) / "book.parquet")], check=True, capture_output=True)  # fmt: skip
    if args.max_duration is None:
        args.max_duration = 1.0  # random weights never stop on their own


def child(args) -> str:
    """Run run_once in a fresh interpreter: its own Ray, and `--code`'s pipeline first on the path."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    paths = [args.code] if args.code else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    argv = _without(sys.argv[1:], "--work")
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", "--work", args.work]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.max_duration is not None and "--max-duration" not in argv:
        cmd += ["--max-duration", str(args.max_duration)]
    done = subprocess.run(cmd, env=env, cwd=args.code or REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _without(argv: list[str], flag: str) -> list[str]:
    """argv minus `flag VALUE` and `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
