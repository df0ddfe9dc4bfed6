"""Scale: wall time, peak memory and storage list calls of each barkpipe step from 10k to 1M manifest rows.

For each size a deterministic manifest of 1-3 English sentences per row (some with numbers) is
written, then every step runs as its own process, timed from launch to exit:

    validate   barkpipe validate CONFIG
    dry-run    barkpipe run CONFIG --dry-run
    run        runner.run with pipeline_efficiency's stand-in engine (sleeps at --rate audio-s/s;
               tiny random weights only feed the tokenizer), on a local Ray, into a fresh output
    resume     the same run again: nothing is left to do
    report     barkpipe report OUTPUT --out ...
    export     barkpipe export OUTPUT --format webdataset --out ...

A step past --step-timeout is stopped and recorded as "> N s": at that size, that is the finding.

    python bench/scale.py                                      # 10k and 100k rows, every step
    python bench/scale.py --sizes 10000 --steps validate,dry-run --json /tmp/scale.json
    python bench/scale.py --sizes 1000000 --add            # add 1M to the sizes already in bench/out/scale/scale.json
    python bench/scale.py --sizes 100000 --steps run,resume --nodes 2 --actors 2   # on a two-node local cluster
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import importlib.abc
import importlib.machinery
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
STEPS = ("validate", "dry-run", "run", "resume", "report", "export")
MANIFEST_CHUNK_ROWS = 50_000  # rows generated and written per Parquet row group (bounds the bench's memory)
POLL_FAST_S, POLL_SLOW_S, FAST_POLL_FOR_S = 0.05, 0.5, 3.0  # fine timing for short steps, cheap for long ones
RSS_EVERY_S = 30.0  # the step's own process: its resident memory over time (where a peak comes from)
KILL_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
COUNTS_ENV = "BENCH_SCALE_COUNTS"  # folder where a child process writes its list-call counts at exit

# Manifest text: subject + verb + object [+ number phrase] [+ tail], 1-3 sentences a row.
SUBJECTS = ("The old lighthouse keeper", "Our neighbour", "Dr. Patel", "The committee", "A small fishing boat",
            "Her younger brother", "The city museum", "Every student in the class", "The night train",
            "Mr. Alvarez", "The farmer's daughter", "A tired traveller", "The orchestra", "My grandmother",
            "The new manager")  # fmt: skip
VERBS = ("opened", "remembered", "carried", "painted", "announced", "measured", "followed", "repaired", "described",
         "questioned", "delivered", "photographed", "borrowed", "finished", "celebrated")  # fmt: skip
OBJECTS = ("the wooden door", "a letter from home", "the quarterly report", "three baskets of apples",
           "the broken clock", "an unfinished symphony", "the map of the valley", "a basket of bread",
           "the long winter", "every single window", "the recipe", "a quiet conversation")  # fmt: skip
NUMBERS = ("in {y}", "at {h}:{m:02d} in the morning", "for ${d}.{c:02d}", "by {p} percent", "on March {day}",
           "with {k},{t:03d} visitors", "after {h}.5 hours", "in room {n}")  # fmt: skip
TAILS = ("before the storm arrived", "without saying a word", "on the first day of spring", "while the kettle boiled",
         "as the bells rang", "and nobody noticed", "", "", "")  # fmt: skip
ENDS = (".", ".", ".", "!", "?")
NUMBER_SHARE = 0.35  # sentences with a number phrase (years, times, money, percentages)


def manifest_text(rng) -> str:
    """One row's text: 1-3 sentences."""
    sentences = []
    for _ in range(int(rng.integers(1, 4))):
        words = [SUBJECTS[rng.integers(len(SUBJECTS))], VERBS[rng.integers(len(VERBS))],
                 OBJECTS[rng.integers(len(OBJECTS))]]  # fmt: skip
        if rng.random() < NUMBER_SHARE:
            n = rng.integers(1, 60, 8)
            words.append(NUMBERS[rng.integers(len(NUMBERS))].format(
                y=1900 + int(n[0]) * 2, h=1 + n[1] % 12, m=n[2], d=n[3], c=n[4], p=n[5], day=1 + n[6] % 28,
                k=n[7], t=n[0] * 7, n=100 + n[1] * 3))  # fmt: skip
        words.append(TAILS[rng.integers(len(TAILS))])
        sentences.append(" ".join(w for w in words if w) + ENDS[rng.integers(len(ENDS))])
    return " ".join(sentences)


def write_manifest(path: Path, rows: int, seed: int = 0) -> None:
    """A Parquet manifest of `rows` rows (id, text); the same rows and seed give the same file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, MANIFEST_CHUNK_ROWS):
            ids = [f"row{i:07d}" for i in range(start, min(rows, start + MANIFEST_CHUNK_ROWS))]
            writer.write_table(pa.table({"id": ids, "text": [manifest_text(rng) for _ in ids]}, schema=schema))


def write_config(work: Path, weights: Path, args) -> Path:
    """The run config (JSON is YAML): defaults except a CPU device, 0.5 CPU per actor and a chunk cap."""
    config = {
        "input": {"path": str(work / "manifest.parquet")},
        "output": {"path": str(work / "output")},
        "model": {"weights": str(weights), "device": "cpu"},
        # The stand-in speaks each chunk for at most this long: rows stay cheap to finish, so the
        # figures are the pipeline's per-row cost rather than audio encoding.
        "generation": {"max_duration": args.max_duration},
        "compute": {"actors": args.actors, "cpus_per_actor": 0.5},
    }
    path = work / "config.yaml"
    path.write_text(json.dumps(config, indent=1))
    return path


def step_command(step: str, work: Path, config: Path, args) -> list[str]:
    barkpipe = str(Path(sys.executable).parent / "barkpipe")
    output = str(work / "output")
    run = [sys.executable, str(Path(__file__).resolve()), "--child-run", str(config), "--rate", str(args.rate)]
    return {
        "validate": [barkpipe, "validate", str(config)],
        "dry-run": [barkpipe, "run", str(config), "--dry-run"],
        "run": run,
        "resume": run,  # the same run again, over the output the first one finished
        "report": [barkpipe, "report", output, "--out", str(work / "report" / "report.html")],
        "export": [barkpipe, "export", output, "--format", "webdataset", "--out", str(work / "export")],
    }[step]


def child_run(config: str, rate: float) -> None:
    """What `barkpipe run CONFIG` does (every check, then runner.run), with the stand-in engine."""
    from pipeline_efficiency import StandInEngine

    from pipeline.batch.run import run
    from pipeline.checks import check_run
    from pipeline.config import load_config

    cfg = load_config(config)
    report = check_run(cfg)
    if report.problems:
        sys.exit("error: " + "; ".join(report.problems))
    summary = run(cfg, progress=False, engine_factory=functools.partial(StandInEngine, rate))
    print("SUMMARY " + json.dumps({k: v for k, v in summary["this_run"].items() if k != "error_samples"}))


# --- measuring one process tree ------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in ticks) of a live process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def _rss_mb(pid: int) -> float | None:
    """pid's resident memory now (VmRSS), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next((line for line in f if line.startswith("VmRSS:")), None)
    except OSError:
        return None
    return None if line is None else round(int(line.split()[1]) / 1024, 1)


def _tree(root: int) -> dict[int, int]:
    """pid -> start time of root and every live descendant."""
    children: dict[int, list[int]] = {}
    starts = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            found[pid] = starts[pid]
            todo += children.get(pid, [])
    return found


def _pss_bytes(pids) -> int:
    """Proportional set size of the processes: shared pages (Ray's object store) are counted once in all."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in lines if line.startswith("Pss:")), 0)
    return total


def _end(processes: dict[int, int], grace_s: float = 0.0) -> int:
    """Wait up to grace_s for the processes we saw to exit, then SIGTERM, then SIGKILL those still the same
    process (pid and start time); returns how many had to be ended."""
    alive = lambda: [p for p, start in processes.items() if (s := _proc_stat(p)) and s[1] == start]  # noqa: E731
    deadline = time.monotonic() + grace_s
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    ended = len(left)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + KILL_GRACE_S
        while (left := alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
    return ended


def measure(argv: list[str], env: dict, timeout_s: float, log: Path) -> dict:
    """Run argv to its end or timeout_s: wall s, peak RSS of its largest process, peak PSS of its whole tree, CPU s."""
    load = os.getloadavg()[0]
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        seen: dict[int, int] = {}
        tree_peak, timed_out = 0, False
        series: list[float] = []  # MB resident at launch, then every RSS_EVERY_S
        while not (done := os.wait4(proc.pid, os.WNOHANG))[0]:
            elapsed = time.perf_counter() - start
            if elapsed > timeout_s:
                timed_out, wall = True, elapsed  # the stop (SIGTERM, then SIGKILL) is not the step's time
                _end(_tree(proc.pid) | seen)
                done = os.wait4(proc.pid, 0)
                break
            tree = _tree(proc.pid)
            seen |= tree
            tree_peak = max(tree_peak, _pss_bytes(tree))
            if elapsed >= len(series) * RSS_EVERY_S and (resident := _rss_mb(proc.pid)) is not None:
                series.append(resident)
            time.sleep(POLL_FAST_S if elapsed < FAST_POLL_FOR_S else POLL_SLOW_S)
        else:
            wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(done[1])  # reaped by wait4: Popen must not wait again
    usage = done[2]
    # Ray's daemons and workers exit on their own once the driver has gone; those of a stopped run may not.
    stragglers = _end({p: s for p, s in seen.items() if p != proc.pid}, grace_s=KILL_GRACE_S)
    result = {"wall_s": round(wall, 2), "timed_out": timed_out, "returncode": proc.returncode,
              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "tree_pss_mb": round(tree_peak / 2**20, 1),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "sys_s": round(usage.ru_stime, 1),
              "load_1m": round(load, 2)}  # fmt: skip
    if len(series) > 1:
        result["rss_mb_series"], result["rss_every_s"] = series, RSS_EVERY_S
    if stragglers:
        result["leftover_processes_ended"] = stragglers
    if proc.returncode and not timed_out:
        result["log_tail"] = log.read_text()[-1500:]
    counts = Path(env[COUNTS_ENV]) / f"calls-{proc.pid}.json"
    if counts.exists():
        result["list_calls"] = json.loads(counts.read_text())
    return result


# --- counting storage list calls in a child (installed by the generated sitecustomize) -----------


def install_list_counter(folder: str) -> None:
    """Count this process's outermost storage list calls (Store.glob/find, fsspec ls/find/glob/walk); at exit
    write {"total": n, "entries": names listed, "Store.glob": n, ...} to folder/calls-PID.json. A call made
    inside another counted call (glob -> find -> ls) is part of it, so each count is one listing a store
    would serve; on S3 a listing costs a request per 1,000 entries."""
    counts: Counter = Counter()
    entries = [0]
    depth = threading.local()

    def wrap(cls, name: str, key: str) -> None:
        original = cls.__dict__[name]

        @functools.wraps(original)
        def counted(*args, **kwargs):
            outer = not getattr(depth, "n", 0)
            counts[key] += outer
            depth.n = getattr(depth, "n", 0) + 1
            try:
                found = original(*args, **kwargs)
            finally:
                depth.n -= 1
            if outer and isinstance(found, list | dict):  # walk's generator is not counted here
                entries[0] += len(found)
            return found

        setattr(cls, name, counted)

    def patch(module) -> None:
        for cls in vars(module).values():
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                for name in ("ls", "find", "glob", "walk"):
                    if callable(cls.__dict__.get(name)):
                        wrap(cls, name, f"{cls.__name__}.{name}")

    def write() -> None:
        Path(folder, f"calls-{os.getpid()}.json").write_text(
            json.dumps({"total": sum(counts.values()), "entries": entries[0], **+counts})  # + drops zeros
        )

    # fsspec's walk is a generator: its creation counts; the ls calls it makes while iterated count
    # too unless a counted call (fsspec's find) does the iterating.
    sys.meta_path.insert(0, _AfterImport({"pipeline.storage", "fsspec.spec", "fsspec.implementations.local"}, patch))
    atexit.register(write)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls patch(module) right after one of `names` is first imported (nothing is imported early)."""

    def __init__(self, names: set[str], patch) -> None:
        self.names, self.patch = names, patch

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run_module = spec.loader.exec_module

        def exec_module(module) -> None:
            run_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader
        return spec


SITECUSTOMIZE = f"""import os
if os.environ.get({COUNTS_ENV!r}):
    import scale
    scale.install_list_counter(os.environ[{COUNTS_ENV!r}])
"""


# --- the benchmark --------------------------------------------------------------------------------


def output_files(output: Path) -> dict:
    """How the output folder looks after a run: metadata parts, audio files and audio folders."""
    counts = {"metadata_parts": 0, "audio_files": 0, "audio_dirs": 0}
    for folder, _, files in os.walk(output / "audio"):
        counts["audio_dirs"] += folder != str(output / "audio")
        counts["audio_files"] += len(files)
    if (output / "metadata").is_dir():
        counts["metadata_parts"] = sum(name.endswith(".parquet") for name in os.listdir(output / "metadata"))
    return counts


def fresh(path: Path) -> None:
    """Remove what an earlier run of the bench left at path (output, report, export), so each step starts clean."""
    if path.is_dir():
        shutil.rmtree(path)


def child_env(out: Path, counts: Path, address: str = "", auth: bool = True) -> dict:
    hooks = out / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **{COUNTS_ENV: str(counts)})
    env.pop("RAY_ADDRESS", None)  # a local Ray of the run's own, unless --address names a cluster
    if address:
        env["RAY_ADDRESS"] = address
    if not auth:  # the test cluster's nodes run without token auth (tests/support/ray_cluster.py)
        env["RAY_AUTH_MODE"] = "disabled"
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def bench_size(rows: int, steps: list[str], weights: Path, args, record) -> None:
    """Every step at one manifest size; record(step, result) after each."""
    work = Path(args.out) / str(rows)
    counts = work / "counts"
    # validate and dry-run see a first run, as `run` does; without `run`, resume finds the last one's output
    for earlier in (counts, work / "output") if "run" in steps else (counts,):
        fresh(earlier)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    counts.mkdir(parents=True)
    start = time.perf_counter()
    write_manifest(work / "manifest.parquet", rows)
    record("manifest", {"rows": rows, "write_s": round(time.perf_counter() - start, 2), **machine()})
    config = write_config(work, weights, args)
    env = child_env(Path(args.out), counts, args.address, auth=not args.nodes)
    run_finished = "run" not in steps and (work / "output" / "summary.json").is_file()
    for step in steps:
        if step == "resume" and not run_finished:
            record(step, {"skipped": "the run step did not finish here, so there is nothing to resume"})
            continue
        fresh(work / {"run": "output", "report": "report", "export": "export"}.get(step, "-"))
        print(f"== {rows} rows: {step}", file=sys.stderr, flush=True)
        cold = args.cold and drop_page_cache()
        result = measure(step_command(step, work, config, args), env, args.step_timeout, work / "logs" / f"{step}.log")
        result["page_cache_dropped"] = cold
        if step in ("run", "resume"):
            summary = [line for line in (work / "logs" / f"{step}.log").read_text().splitlines()
                       if line.startswith("SUMMARY ")]  # fmt: skip
            if summary:
                result["summary"] = json.loads(summary[-1].split(" ", 1)[1])
            result["output_files"] = output_files(work / "output")
            run_finished = run_finished or (step == "run" and result["returncode"] == 0)
        if step == "export":  # its shards are as large as the audio: measured, then removed to save the disk
            result["export_bytes"] = sum(f.stat().st_size for f in (work / "export").rglob("*") if f.is_file())
            fresh(work / "export")
        record(step, result)
        print(f"   {cell(result)}", file=sys.stderr, flush=True)


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (needs root), so every size's step reads its files from disk alike:
    otherwise a small output written just before is read from memory and a large one from disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def cell(r: dict | None) -> str:
    """One table cell: wall s, peak RSS MB of the largest process / peak PSS of the whole tree, list calls."""
    if not r:
        return "not measured"
    if "skipped" in r:
        return "skipped"
    wall = f"{'> ' if r['timed_out'] else ''}{r['wall_s']:.1f} s"
    if r["returncode"] and not r["timed_out"]:
        wall += f" (exit {r['returncode']})"
    calls = r.get("list_calls", {})
    return (
        f"{wall}, {r['peak_rss_mb']:.0f}/{r['tree_pss_mb']:.0f} MB, {calls.get('total', '-')} lists of "
        f"{calls.get('entries', '-')} entries"
    )


def growth(results: dict, steps: list[str]) -> dict:
    """Per step and pair of consecutive sizes: wall and peak-RSS ratios (a timed-out larger size is a lower bound)."""
    sizes = sorted(int(s) for s in results)
    ratios: dict = {}
    for small, large in zip(sizes, sizes[1:], strict=False):
        for step in steps:
            a, b = results[str(small)].get(step), results[str(large)].get(step)
            finished = a and "skipped" not in a and not a["timed_out"] and not a["returncode"]
            if not finished or not b or "skipped" in b or (b["returncode"] and not b["timed_out"]):
                continue  # a failed step has no figure to compare; a timed-out larger one is a lower bound
            ratios.setdefault(step, {})[f"{large}/{small}"] = {
                "rows": large / small,
                "wall": round(b["wall_s"] / max(a["wall_s"], 0.01), 2),
                "wall_is_lower_bound": b["timed_out"],
                "peak_rss": round(b["peak_rss_mb"] / max(a["peak_rss_mb"], 0.1), 2),
                "tree_pss": round(b["tree_pss_mb"] / max(a["tree_pss_mb"], 0.1), 2),
            }
    return ratios


def print_table(results: dict, steps: list[str], ratios: dict) -> None:
    print("wall s, peak MB (RSS of the largest process / PSS of the process tree), list calls of the step's process")
    for size in sorted(results, key=int):
        print(f"{int(size):>9,} rows")
        for step in steps:
            print(f"  {step:>9}  {cell(results[size].get(step))}")
    for step, pairs in ratios.items():
        for pair, r in pairs.items():
            bound = ">= " if r["wall_is_lower_bound"] else ""
            print(
                f"growth {step:>9} {pair}: rows x{r['rows']:g}, wall x{bound}{r['wall']}, peak RSS x{r['peak_rss']}, "
                f"tree PSS x{r['tree_pss']}"
            )


def keep_earlier(earlier: dict, settings: dict, sizes: list[int]) -> dict:
    """The results of an earlier run of the bench for sizes not measured now, if it ran the same engine settings."""
    same = {"rate": None, "max_duration": None, "actors": 1, "nodes": 0}  # (older files lack the last two)
    if any(earlier["settings"].get(k, default) != settings[k] for k, default in same.items()):
        sys.exit(f"--add: {tuple(same)} differ from the JSON file's {earlier['settings']}; figures would not compare")
    return {size: r for size, r in earlier["results"].items() if int(size) not in sizes}


@contextlib.contextmanager
def local_cluster(nodes: int):
    """A head and nodes - 1 worker nodes of 1 CPU each on this machine (the tests' cluster helper); yields
    the address to run on ("" for nodes 0: each run starts its own local Ray)."""
    if not nodes:
        yield ""
        return
    sys.path.insert(0, str(REPO / "tests"))
    from support.ray_cluster import RayHead, RayWorker

    env = {"PYTHONPATH": str(BENCH)}  # the stand-in engine's module, for the nodes' workers
    head = RayHead(num_cpus=1, env=env).start()
    workers = []
    try:
        for n in range(nodes - 1):
            workers.append(RayWorker(head, num_cpus=1, env=env, name=f"worker{n}").start())
        yield head.gcs_address
    finally:
        for node in (*workers, head):
            node.stop()


def machine() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {"cpu": model, "cores": os.cpu_count(), "commit": commit.stdout.strip(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="manifest rows, comma-separated")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"some of {','.join(STEPS)}")
    parser.add_argument("--out", default=str(BENCH / "out" / "scale"))
    parser.add_argument("--json", default="", help="also write the results here [default: OUT/scale.json]")
    parser.add_argument("--step-timeout", type=float, default=900.0, help="seconds before a step is stopped")
    parser.add_argument("--rate", type=float, default=1000.0, help="stand-in engine audio-s/s (one actor)")
    parser.add_argument("--max-duration", type=float, default=1.0, help="generation.max_duration: audio s per chunk")
    parser.add_argument("--actors", type=int, default=1, help="compute.actors: stand-in engine actors")
    parser.add_argument(
        "--address", default="", help="run and resume on this running Ray cluster (RAY_ADDRESS) instead of a local one"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="start a local cluster of this many 1-CPU nodes (`ray start`) and run and resume on it",
    )
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each step (needs root)")
    parser.add_argument("--add", action="store_true", help="keep the other sizes already in the JSON file")
    parser.add_argument("--child-run", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_run:
        return child_run(args.child_run, args.rate)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if unknown := sorted(set(steps) - set(STEPS)):
        parser.error(f"unknown step(s) {unknown}; allowed: {','.join(STEPS)}")
    if not sizes or min(sizes) < 1:
        parser.error(f"--sizes must be positive row counts, got {args.sizes!r}")
    out = Path(args.out)
    weights = out / "weights-tiny"
    if not weights.is_dir():  # only the tokenizer's vocabulary and the checks read them
        barkpipe = str(Path(sys.executable).parent / "barkpipe")
        subprocess.run([barkpipe, "weights", "make-random", "--size", "tiny", "--layout", "suno", str(weights)],
                       check=True, capture_output=True)  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k not in ("child_run", "add")}
    report = {"machine": machine(), "settings": settings, "results": {}}
    json_path = Path(args.json or out / "scale.json")
    if args.add and json_path.exists():
        report["results"] = keep_earlier(json.loads(json_path.read_text()), settings, sizes)

    def record(size: int, step: str, result: dict) -> None:
        report["results"].setdefault(str(size), {})[step] = result
        report["growth"] = growth(report["results"], steps)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))  # after every step: a stopped bench keeps its figures

    with local_cluster(args.nodes) as address:
        args.address = address or args.address
        for rows in sizes:
            bench_size(rows, steps, weights, args, functools.partial(record, rows))
    print_table(report["results"], steps, report["growth"])
    print(f"results in {json_path}")


if __name__ == "__main__":
    main()
