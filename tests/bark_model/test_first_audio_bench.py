"""bench/first_audio_bench.py: the CLI launched as a process, its first stdout byte timed from launch."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "first_audio_bench.py"


def test_the_bench_times_from_launch_and_agrees_with_the_cli(tiny_suno, tmp_path):
    spec = importlib.util.spec_from_file_location("first_audio_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    report = bench.main(["--weights", str(tiny_suno), "--repeats", "1", "--max-duration", "0.2",
                         "--json", str(tmp_path / "r.json")])  # fmt: skip
    [run] = report["runs"]
    assert (tmp_path / "r.json").is_file() and run["audio_s"] > 0
    # The CLI counts from its own process start, a little after Popen: never later than the byte arrives.
    assert run["cli_first_after_load_s"] < run["cli_first_after_launch_s"] <= run["first_byte_s"] + 0.1
    assert run["first_byte_s"] <= run["all_audio_s"]
