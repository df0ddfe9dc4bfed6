"""Side by side: audio-seconds per wall-second of ours, transformers and official Bark, same weights.

    python3 bench/engine_bench.py --quick            # 2-core CPU, a few minutes (small, 4 texts of 2 s): make bench
    python3 bench/engine_bench.py --cpu              # 2-core CPU, ~12 minutes (small, 8 texts of 2 s): CPU targets
    python3 bench/engine_bench.py --gpu              # one H100/H200, ~10 minutes (large + small)
    python3 bench/engine_bench.py --dry              # tiny weights, seconds: checks the harness only

Each (system, size, precision) runs in its own process (peak memory per config, one failure
doesn't end the run); results land in bench/out/engine_bench.json after every config.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # bark_model without an install; systems/roofline beside us

OUT = HERE / "out"
SCHEMA = "barkpipe.engine_bench/1"
MODES = {
    # sizes, batches (ours; hf/official get their own), tokens, precisions, repeats, warm-up, budget
    "quick": dict(sizes="small", batches="4", hf_batches="4", tokens=100, systems="ours,hf,official",
                  precisions="int8,fp32", hf_precisions="fp32", extra_batches="4", repeats=1,
                  warmup="short", agree_tokens=16, budget_s=0, official_precisions="int8", official_batches="4"),
    "cpu": dict(sizes="small", batches="8", hf_batches="8", tokens=100, systems="ours,hf,official",
                precisions="int8,fp32,bf16", hf_precisions="fp32", extra_batches="8", repeats=1,
                warmup="short", agree_tokens=16, budget_s=0, official_precisions="int8", official_batches="8"),
    "gpu": dict(sizes="large,small", batches="1,8,64,256", hf_batches="1,8,64", tokens=256,
                systems="ours,hf,official", precisions="fp16,bf16,int8,fp32", hf_precisions="fp16",
                extra_batches="1,64", repeats=2, warmup="short", agree_tokens=256, budget_s=540,
                official_precisions="fp32", official_batches="1"),
    "dry": dict(sizes="tiny", batches="1,2", hf_batches="1,2", tokens=8, systems="ours,hf",
                precisions="fp32,bf16,int8", hf_precisions="fp32", extra_batches="1,2", repeats=1,
                warmup="none", agree_tokens=8, budget_s=0, official_precisions="fp32", official_batches="1"),
    "full": dict(sizes="small,large", batches="1,8,64", hf_batches="1,8,64", tokens=256,
                 systems="ours,hf,official", precisions="fp32,bf16,int8", hf_precisions="fp32",
                 extra_batches="1,8,64", repeats=1, warmup="short", agree_tokens=256, budget_s=0,
                 official_precisions="fp32,int8", official_batches="1,8"),
}  # fmt: skip
COMPILE = {"auto": None, "on": True, "off": False}  # --compile values -> BarkEngine.compile
WARMUP_TOKENS = 16  # a short warm-up: every kernel and shape family runs once, cheaply


# -- worker: one (system, size, precision) in its own process -----------------------------------
def worker(spec_path: str) -> None:
    import numpy as np
    import torch

    from systems import SYSTEMS

    spec = json.loads(Path(spec_path).read_text())
    device = torch.device(spec["device"])
    rows = []

    def save():
        Path(spec["result_path"]).write_text(json.dumps(rows))

    try:
        system = SYSTEMS[spec["system"]](Path(spec["weights"]), device, spec["precision"])
    except Exception as err:  # noqa: BLE001  (a config that can't load is a table row, not a crash)
        rows.append({"batch": None, "status": "n/a", "error": f"{type(err).__name__}: {err}"})
        return save()
    engine = getattr(system, "engine", None)  # ours: the compile switch and its warm-up clock
    if engine is not None and spec.get("compile") is not None:
        engine.compile = spec["compile"]  # read when workspaces are made, i.e. on the first call
    for batch in spec["batches"]:
        if spec["deadline"] and time.time() > spec["deadline"]:
            rows.append({"batch": batch, "status": "skipped", "error": "time budget spent"})
            continue
        try:
            spent = engine.warmup_s if engine is not None else 0.0
            rows.append({"batch": batch, **time_batch(system, batch, spec, device)})
            if engine is not None:  # compile + graph capture, in the warm-up; the timed runs should have none
                rows[-1].update(compiled=engine.compile, warmup_s=engine.warmup_s - spent, timed_warmup_s=engine.last_warmup_s)
            print(f"   batch {batch}: {rows[-1]['audio_s_per_s']:.3g} audio-s/s, {rows[-1]['wall_s']:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        except torch.cuda.OutOfMemoryError as err:
            rows.append({"batch": batch, "status": "oom", "error": str(err).splitlines()[0]})
            torch.cuda.empty_cache()
            break  # larger batches won't fit either
        save()
    if spec["agree_tokens"]:
        try:
            run = system.run(1, spec["agree_tokens"], greedy=True)
            np.savez(spec["agree_path"], **{k: np.asarray(v) for k, v in run.codes.items()})
        except Exception as err:  # noqa: BLE001
            rows.append({"batch": None, "status": "agree-error", "error": f"{type(err).__name__}: {err}"})
    save()


def time_batch(system, batch: int, spec: dict, device) -> dict:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_rss_peak()
    if spec["warmup"] == "full" or (spec["warmup"] == "short" and spec.get("first_batch") != "done"):
        # Compiled steps warm up at the timed length: every key-length bucket compiles before timing.
        compiled = spec["system"] == "ours" and spec.get("compile") is not False and device.type == "cuda"
        full = spec["warmup"] == "full" or compiled
        print(f"   batch {batch}: warm-up", file=sys.stderr, flush=True)
        # The official package has no batch dimension: one row warms every kernel it uses.
        system.run(1 if spec["system"] == "official" else batch, spec["tokens"] if full else WARMUP_TOKENS)
        if device.type == "cpu":  # on CPU one short warm-up per process is enough (no graphs, no autotune)
            spec["first_batch"] = "done"
    print(f"   batch {batch}: timed run{'s' if spec['repeats'] > 1 else ''} ({spec['tokens']} semantic tokens per row)",
          file=sys.stderr, flush=True)  # fmt: skip
    runs = [system.run(batch, spec["tokens"]) for _ in range(spec["repeats"])]
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = rss_peak_mb()
    wall = statistics.median(r.wall_s for r in runs)
    stage = {k: statistics.median(r.stage_s[k] for r in runs) for k in runs[0].stage_s}
    r = runs[0]  # what came out is the same every repeat
    return {
        "status": "ok",
        "wall_s": wall,
        "stage_s": stage,
        "audio_s": r.audio_s,
        "audio_s_per_s": r.audio_s / wall,
        "semantic_tok_s": r.semantic_tokens / stage["semantic"],
        "coarse_tok_s": r.coarse_tokens / stage["coarse"],
        "fine_frames_s": r.fine_frames / stage["fine"],
        "decode_audio_s_per_s": r.audio_s / stage["decode"],
        "peak_mb": peak_mb,
        "semantic_tokens_per_row": sorted(set(r.n_semantic_per_row)),
        "repeats": len(runs),
        "load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # CPU rows: was the machine shared?
    }


def reset_rss_peak() -> None:
    """Start a new RSS high-water mark at the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak is the process's since start; batches run in ascending order


def rss_peak_mb() -> float:
    """RSS high-water in MiB: VmHWM where Linux has it, else getrusage's ru_maxrss.

    ru_maxrss survives execve on Linux, so in a worker it would report the parent's peak;
    VmHWM belongs to this process's memory alone and honours the reset above.
    """
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


# -- orchestration ------------------------------------------------------------------------------
def ensure_weights(root: Path, size: str, layout: str) -> Path:
    """Random weights in the real format, cached; written to a temp dir and renamed when whole."""
    from bark_model.random_weights import make_random_weights

    path = root / f"{size}-{layout}"
    if not (path / "RANDOM_WEIGHTS.txt").exists():
        root.mkdir(parents=True, exist_ok=True)
        print(f"making random {size} weights ({layout} layout) in {path} ...", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{size}-{layout}-"))
        make_random_weights(tmp, size=size, layout=layout, seed=0)  # same seed: same values in both layouts
        if path.exists():
            import shutil

            shutil.rmtree(path)
        tmp.rename(path)
    return path


def plan_jobs(args) -> list[dict]:
    """Configs in priority order, so a time budget cuts the least important ones.

    First ours at its first precision and transformers (the headline ratio) for every size,
    then the official package, then ours' other precisions and the fp32 agreement reference.
    """
    from systems import LAYOUTS

    precisions = [p for p in args.precisions if p != "fp16" or args.device == "cuda"]
    tiers = [[], [], []]
    for size in args.sizes:
        for system in args.systems:
            if system == "ours":
                # The first (precision, compile) pair runs every batch; the others the extra batches.
                variants = [(p, c) for p in precisions for c in (args.compile if p == precisions[0] else args.compile[:1])]
                for i, (precision, comp) in enumerate(variants):
                    batches = args.batches if i == 0 else [b for b in args.batches if b in args.extra_batches]
                    tiers[min(i, 1) * 2].append(dict(system="ours", size=size, precision=precision, batches=batches,
                                                     compile=COMPILE[comp]))  # fmt: skip
            elif system == "hf":
                tiers[0] += [dict(system="hf", size=size, precision=p, batches=args.hf_batches) for p in args.hf_precisions]
            elif system == "official":
                tiers[1] += [dict(system="official", size=size, precision=p, batches=args.official_batches,
                                  tokens=args.official_tokens) for p in args.official_precisions]  # fmt: skip
        if args.agree_tokens and "ours" in args.systems and "fp32" not in precisions:
            tiers[2].append(dict(system="ours", size=size, precision="fp32", batches=[]))  # the agreement reference
    tiers[2].sort(key=lambda job: job["precision"] != "fp32")  # the agreement reference first (stable)
    jobs = [job for tier in tiers for job in tier]
    for job in jobs:
        job["layout"] = LAYOUTS[job["system"]]
        job.setdefault("tokens", args.tokens)
        job["agree_tokens"] = args.agree_tokens if job["system"] == "ours" else 0
    return jobs


def run_job(job: dict, args, weights: Path, deadline: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = dict(job, weights=str(weights), device=args.device, repeats=args.repeats, warmup=args.warmup,
                    deadline=deadline, result_path=f"{tmp}/result.json",
                    agree_path=str(args.agree_dir / f"{job['size']}-{job['system']}-{job['precision']}.npz"))  # fmt: skip
        Path(f"{tmp}/spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", f"{tmp}/spec.json"])
        result = Path(spec["result_path"])
        rows = json.loads(result.read_text()) if result.exists() else []
        if proc.returncode != 0:
            rows.append({"batch": None, "status": "error", "error": f"worker exited with status {proc.returncode}"})
    base = {k: job[k] for k in ("system", "size", "precision", "tokens", "compile") if k in job}
    return [dict(base, **row) for row in rows]


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    args.device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    # Agreement compares codes of this run only; a folder per run keeps concurrent runs apart.
    args.agree_dir = args.out / "agree" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    args.agree_dir.mkdir(parents=True)
    machine = machine_info(args.device)
    print(machine["line"], flush=True)
    from roofline import measure_bandwidth

    bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else measure_bandwidth(args.device)
    report = {"schema": SCHEMA, "machine": machine, "settings": settings_of(args),
              "bandwidth_gb_s": bandwidth / 1e9, "bandwidth_source": "given" if args.bandwidth_gbs else "measured",
              "rows": [], "agreement": [], "notes": []}  # fmt: skip
    start = time.time()
    deadline = start + args.budget_s if args.budget_s else 0
    jobs = plan_jobs(args)
    for k, job in enumerate(jobs, 1):
        if deadline and time.time() > deadline:
            report["rows"] += [dict(system=job["system"], size=job["size"], precision=job["precision"], tokens=job["tokens"],
                                    batch=b, status="skipped", error="time budget spent") for b in job["batches"]]  # fmt: skip
            continue
        weights = ensure_weights(args.weights_dir, job["size"], job["layout"])
        print(f"== [{k}/{len(jobs)}] {job['system']} {job['size']} {job['precision']} batches {job['batches']} "
              f"(elapsed {time.time() - start:.0f} s, load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)  # fmt: skip
        report["rows"] += [r for r in run_job(job, args, weights, deadline) if job["batches"] or r["status"] != "ok"]
        finish(report, args, bandwidth)
    report["elapsed_s"] = time.time() - start
    report["machine"]["load_average_end_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    finish(report, args, bandwidth)
    print_table(report)
    return 0


def finish(report: dict, args, bandwidth: float) -> None:
    add_roofline(report["rows"], bandwidth)
    add_ratios(report["rows"], reference_hf=args.hf_precisions[0] if args.hf_precisions else None)
    report["agreement"] = add_agreement(args.agree_dir, args.sizes, args.precisions)
    for path in {args.out / "engine_bench.json", args.json} - {None}:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=float))


# -- report -------------------------------------------------------------------------------------
def machine_info(device: str) -> dict:
    import torch

    if device == "cuda":
        hw = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        model = next((l.split(":", 1)[1].strip() for l in _read("/proc/cpuinfo").splitlines() if l.startswith("model name")),
                     platform.processor() or "unknown CPU")  # fmt: skip
        hw = f"{model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    from importlib import metadata

    try:
        tf = metadata.version("transformers")  # not imported: that alone takes seconds
    except metadata.PackageNotFoundError:
        tf = "absent"
    commit = _git("rev-parse", "--short", "HEAD") or os.environ.get("BENCH_COMMIT", "unknown")
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    info = {"hardware": hw, "torch": torch.__version__, "transformers": tf, "python": platform.python_version(),
            "date": date, "commit": commit, "load_average_1m": load}  # fmt: skip
    info["line"] = f"{hw} | torch {torch.__version__} | transformers {tf} | {date} | commit {commit} | load {load:.1f}"
    return info


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def add_roofline(rows: list[dict], bandwidth: float) -> None:
    from bark_model.random_weights import model_configs
    from roofline import WEIGHT_BYTES, audio_ceiling

    for row in rows:
        if row.get("status") != "ok":
            continue
        kv_bytes = 2 if row["precision"] in ("fp16", "bf16") else 4
        row["roofline"] = audio_ceiling(model_configs(row["size"]), row["batch"], row["tokens"],
                                        WEIGHT_BYTES[row["precision"]], kv_bytes, bandwidth)  # fmt: skip


def add_ratios(rows: list[dict], reference_hf: str | None) -> None:
    """ratios[other] = this row's audio-s/s over other's, same size and batch (official: B texts in turn)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    for row in ok:
        row["ratios"] = {}
        for other in ok:
            if other["system"] == "ours" or other["size"] != row["size"] or other["batch"] != row["batch"]:
                continue
            if other is not row:
                row["ratios"][f"{other['system']}-{other['precision']}"] = row["audio_s_per_s"] / other["audio_s_per_s"]
        row["ratio_vs_hf"] = row["ratios"].get(f"hf-{reference_hf}")


def add_agreement(folder: Path, sizes: list[str], precisions: list[str]) -> list[dict]:
    """Greedy token agreement of each non-fp32 precision of ours with ours fp32 (row 0, batch 1)."""
    import numpy as np

    out = []
    for size in sizes:
        ref_path = folder / f"{size}-ours-fp32.npz"
        for precision in (p for p in precisions if p != "fp32"):
            path = folder / f"{size}-ours-{precision}.npz"
            entry = {"size": size, "precision": precision, "reference": "ours-fp32"}
            if not (ref_path.exists() and path.exists()):
                out.append(dict(entry, status="n/a"))
                continue
            ref, got = np.load(ref_path), np.load(path)
            same = {}
            for key, cut in (("semantic", 0), ("coarse", 0), ("fine", 2)):  # fine rows 0-1 are the coarse codes
                a, b = ref[key][cut:], got[key][cut:]
                n = min(a.shape[-1], b.shape[-1])
                same[key] = (int((a[..., :n] == b[..., :n]).sum()), int(a[..., :n].size))
            diverge = np.flatnonzero(ref["semantic"] != got["semantic"])
            entry.update({k: s / max(n, 1) for k, (s, n) in same.items()}, status="ok",
                         all=sum(s for s, _ in same.values()) / max(1, sum(n for _, n in same.values())),
                         first_semantic_divergence=int(diverge[0]) if diverge.size else None)  # fmt: skip
            out.append(entry)
    return out


COLUMNS = (("system", 8), ("size", 5), ("prec", 4), ("B", 3), ("audio-s/s", 9), ("sem tok/s", 9), ("(roof)", 8),
           ("crs tok/s", 9), ("(roof)", 8), ("fine fr/s", 9), ("dec a-s/s", 9), ("peak MB", 7), ("xHF", 5),
           ("xoff", 5), ("xoffq", 5))  # fmt: skip


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def table_lines(report: dict) -> list[str]:
    lines = ["  ".join(f"{name:>{w}}" for name, w in COLUMNS)]
    for r in report["rows"]:
        label = r["system"] + {True: "+c", False: "-nc"}.get(r.get("compile"), "")  # compile forced on / off
        head = [label, r["size"], r["precision"], "-" if r.get("batch") is None else str(r["batch"])]
        if r.get("status") != "ok":
            message = f"{r.get('status')}: {r.get('error', '')}"[:100]
            lines.append("  ".join(f"{c:>{w}}" for c, (_, w) in zip(head, COLUMNS)) + "  " + message)
            continue
        roof = r.get("roofline", {})
        off, offq = (r.get("ratios", {}).get(f"official-{p}") for p in ("fp32", "int8"))
        cells = head + [_num(x) for x in (r["audio_s_per_s"], r["semantic_tok_s"], roof.get("semantic_tok_s"),
                        r["coarse_tok_s"], roof.get("coarse_tok_s"), r["fine_frames_s"], r["decode_audio_s_per_s"],
                        r["peak_mb"], r.get("ratio_vs_hf"), off, offq)]  # fmt: skip
        if r["semantic_tokens_per_row"] != [r["tokens"]]:
            cells[0] += "!"  # this system did not make exactly --tokens semantic tokens
        lines.append("  ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS)))
    for a in report["agreement"]:
        if a["status"] == "ok":
            lines.append(f"agreement ours {a['size']} {a['precision']} vs fp32 (greedy): semantic {a['semantic']:.3f} "
                         f"coarse {a['coarse']:.3f} fine {a['fine']:.3f} all {a['all']:.3f} "
                         f"(first semantic difference at {a['first_semantic_divergence']})")  # fmt: skip
        else:
            lines.append(f"agreement ours {a['size']} {a['precision']} vs fp32 (greedy): n/a")
    lines.append(f"roofline: {report['bandwidth_gb_s']:.1f} GB/s ({report['bandwidth_source']}); "
                 f"elapsed {report.get('elapsed_s', 0):.0f} s")  # fmt: skip
    return lines


def print_table(report: dict) -> None:
    print(report["machine"]["line"])
    print("\n".join(table_lines(report)))


def settings_of(args) -> dict:
    keys = ("mode", "device", "systems", "sizes", "batches", "hf_batches", "extra_batches", "tokens", "official_tokens", "compile",
            "precisions", "hf_precisions", "official_precisions", "official_batches", "repeats", "warmup", "agree_tokens",
            "budget_s")  # fmt: skip
    return {k: getattr(args, k) for k in keys}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    for name in ("quick", "cpu", "gpu", "dry"):
        mode.add_argument(f"--{name}", action="store_const", const=name, dest="mode", help=f"preset: {MODES[name]}")
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    strs = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--systems", type=strs, help="any of ours,hf,official")
    p.add_argument("--sizes", type=strs, help="tiny,small,large")
    p.add_argument("--batches", type=ints, help="batch sizes for ours (the first precision; others get --extra-batches)")
    p.add_argument("--hf-batches", type=ints, help="batch sizes for transformers")
    p.add_argument("--extra-batches", type=ints, help="batch sizes for ours' other precisions")
    p.add_argument("--tokens", type=int, help="semantic tokens per row (every system makes exactly this many)")
    p.add_argument("--official-tokens", type=int, help="semantic tokens for the official package (default --tokens)")
    p.add_argument("--precisions", type=strs, help="ours: fp32,bf16,int8,fp16 (fp16 on CUDA only); first gets all batches")
    p.add_argument("--hf-precisions", type=strs, help="transformers: fp32,fp16,bf16; the first is the ratio reference")
    p.add_argument("--official-precisions", type=strs, help="official: fp32, int8 (= quantize_dynamic, CPU only)")
    p.add_argument("--official-batches", type=ints, help="official: B texts one after another (it has no batch dimension)")
    p.add_argument("--compile", type=strs, default=["auto"],
                   help="ours, first precision: any of auto,on,off (auto = on for CUDA); the first runs every batch")
    p.add_argument("--repeats", type=int, help="timed runs per config; the median is reported")
    p.add_argument("--warmup", choices=("full", "short", "none"), help="warm-up run before each batch config")
    p.add_argument("--agree-tokens", type=int, help="greedy agreement run length (0: off)")
    p.add_argument("--budget-s", type=float, help="skip configs once this much wall time is spent (0: none)")
    p.add_argument("--bandwidth-gbs", type=float, help="memory bandwidth for the roofline (default: measured)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--weights-dir", type=Path, default=OUT / "weights", help="cache of random weights")
    p.add_argument("--out", type=Path, default=OUT, help="working folder (agreement codes)")
    p.add_argument("--json", type=Path, help="also write the JSON report here")
    args = p.parse_args(argv)
    args.mode = args.mode or "full"
    preset = dict(MODES[args.mode])
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            parse = {"tokens": int, "repeats": int, "agree_tokens": int, "budget_s": float, "warmup": str}.get(key)
            setattr(args, key, value if parse else (ints if "batches" in key else strs)(value))
    if args.mode == "full" and args.device in ("auto", "cuda") and 256 not in args.batches:
        import torch

        args.batches += [256] if torch.cuda.is_available() else []
    args.official_tokens = args.official_tokens or args.tokens
    if set(args.compile) - set(COMPILE) or not args.compile:
        p.error(f"--compile: got {args.compile}; allowed: a list of {', '.join(COMPILE)}")
    unknown = sorted(set(args.systems) - {"ours", "hf", "official"})
    if unknown:
        p.error(f"--systems: unknown {unknown}; allowed: ours, hf, official")
    return args


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        sys.exit(main())
