"""Time to first audio of `barkpipe say --stream`, counted from launch as a listener waits.

Each repeat launches the CLI as a fresh process with `--stream --out -` and times, from just before
the launch, the first PCM byte on its stdout and the last one; the CLI's own "first audio X s after
launch (Y s after the model loaded)" line is parsed beside them, so the part spent starting Python,
importing torch and loading the model is visible. Weights default to tiny random ones (made once
under bench/out/weights/tiny-suno); give --weights for real ones.

    python bench/first_audio_bench.py [--weights DIR] [--device cpu] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Three paragraphs: three chunks, so first audio (one chunk) and all audio (three) differ.
TEXT = "The first paragraph is here.\n\nThe second one follows it.\n\nAnd the last."
LAUNCH = "from pipeline.cli import app; app(prog_name='barkpipe')"  # what the `barkpipe` script runs
CLI_LINE = re.compile(r"first audio (?P<launch>[\d.]+) s after launch \((?P<loaded>[\d.]+) s after the model loaded\)")
PCM_BYTES_PER_S = 2 * 24_000  # s16le mono at Bark's 24 kHz


def run_once(weights: str, device: str, max_duration: float, timeout_s: float) -> dict:
    """One launch: seconds to the first stdout byte and to the end, and the CLI's own figures."""
    args = ["say", TEXT, "--stream", "--out", "-", "--weights", weights, "--device", device,
            "--temperature", "0", "--max-duration", str(max_duration)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None, "Popen without a stdout pipe"
    first = proc.stdout.read(1)
    first_s = time.perf_counter() - start
    rest = proc.stdout.read()
    all_s = time.perf_counter() - start
    _, stderr = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0 or not first:
        raise SystemExit(f"barkpipe say failed (exit {proc.returncode}): {stderr.decode()[-2000:]}")
    said = CLI_LINE.search(stderr.decode())
    return {
        "first_byte_s": round(first_s, 3),
        "all_audio_s": round(all_s, 3),
        "audio_s": round((len(first) + len(rest)) / PCM_BYTES_PER_S, 3),
        "cli_first_after_launch_s": float(said["launch"]) if said else None,
        "cli_first_after_load_s": float(said["loaded"]) if said else None,
    }


def tiny_weights() -> str:
    """bench/out/weights/tiny-suno, made once (random: the audio is noise, the timings are the point)."""
    from bark_model.random_weights import make_random_weights

    folder = ROOT / "bench" / "out" / "weights" / "tiny-suno"
    if not (folder / "RANDOM_WEIGHTS.txt").is_file():
        make_random_weights(folder, size="tiny", layout="suno", seed=0)
    return str(folder)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights folder or URL (default: tiny random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-duration", type=float, default=1.0, help="seconds per chunk")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one launch may take")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    weights = args.weights or tiny_weights()
    runs = [run_once(weights, args.device, args.max_duration, args.timeout) for _ in range(args.repeats)]
    median = {key: statistics.median(r[key] for r in runs) for key in ("first_byte_s", "all_audio_s")}
    report = {"weights": weights, "device": args.device, "text": TEXT, "runs": runs, "median": median}
    print(f"{'run':>3} {'first byte':>11} {'all audio':>10} {'CLI: launch':>12} {'CLI: load':>10}")
    for k, r in enumerate(runs):
        print(f"{k:>3} {r['first_byte_s']:>10.2f}s {r['all_audio_s']:>9.2f}s "
              f"{r['cli_first_after_launch_s'] or 0:>11.1f}s {r['cli_first_after_load_s'] or 0:>9.1f}s")  # fmt: skip
    print(f"median: first audio {median['first_byte_s']:.2f} s after launch, all audio {median['all_audio_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
