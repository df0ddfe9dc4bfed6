"""CPU cost of finishing a row (trim, join, loudness, encode) per second of audio, on realistic chunks.

Two cases: a 240 s row in 20 chunks and a 40 min row in 200 chunks, each chunk speech-like
noise bursts between Bark-like near-silent padding, handed over as 16-bit PCM (what the engine
stage sends). Costs are time.process_time() per audio-second, the best of --repeats for the
cheap steps. The target (issue 8) is trim + join + loudness + FLAC <= 3 ms per audio-second.

    python bench/finishing_bench.py [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.audio.assemble import integrated_loudness, join_chunks, normalize_loudness, trim_silence  # noqa: E402
from pipeline.audio.encode import FORMATS, encode_audio  # noqa: E402

SR = 24_000  # Bark's output rate
TARGET_MS = 3.0  # issue 8: trim + join + loudness + FLAC, CPU ms per audio-second
CORE = ("trim", "join", "loudness", "encode_flac")


def speech_chunks(total_s: float, n_chunks: int, seed: int = 0) -> list[np.ndarray]:
    """int16 chunks [N_i]: 4 Hz syllable bursts with word gaps, 0.1-0.6 s of -60 dBFS padding each side."""
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(n_chunks):
        speech_s = total_s / n_chunks * rng.uniform(0.8, 1.2)
        t = np.arange(int(speech_s * SR)) / SR
        envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)) ** 2) * (rng.random(t.size // 2400 + 1) > 0.15).repeat(2400)[: t.size]
        voiced = 0.1 * envelope * rng.standard_normal(t.size)
        pads = [1e-3 * rng.standard_normal(int(rng.uniform(0.1, 0.6) * SR)) for _ in range(2)]
        audio = np.concatenate([pads[0], voiced, pads[1]])
        chunks.append(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
    return chunks


def cpu_ms(fn, repeats: int) -> tuple[float, object]:
    """Best CPU milliseconds of `repeats` calls of fn(), and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best * 1000, result


def concat_join(pieces: list[np.ndarray]) -> np.ndarray:
    """Joining as it was before issue 8: the whole track copied again for every chunk (pauses only)."""
    out = np.zeros(0, np.float32)
    for piece in pieces:
        out = np.concatenate([out, np.zeros(int(0.25 * SR), np.float32), piece.astype(np.float32) / 32768])
    return out


def measure_case(name: str, total_s: float, n_chunks: int, formats: list[str], repeats: int,
                 with_oracle: bool, with_before: bool) -> dict:
    chunks = speech_chunks(total_s, n_chunks)
    per_s: dict[str, float] = {}
    ms, pieces = cpu_ms(lambda: [trim_silence(c, SR) for c in chunks], repeats)
    ms_join, joined = cpu_ms(lambda: join_chunks(pieces, SR), repeats)
    audio_s = len(joined) / SR
    per_s["trim"], per_s["join"] = ms / audio_s, ms_join / audio_s
    ms, (leveled, applied) = cpu_ms(lambda: normalize_loudness(joined, SR, -20.0), repeats)
    assert applied, "the bench audio must have a loudness"
    per_s["loudness"] = ms / audio_s
    ms, ours = cpu_ms(lambda: integrated_loudness(joined, SR), repeats)
    per_s["loudness_measure_ours"] = ms / audio_s
    oracle = None
    if with_oracle:
        import pyloudnorm

        ms, oracle = cpu_ms(lambda: pyloudnorm.Meter(SR).integrated_loudness(joined.astype(np.float64)), 1)
        per_s["loudness_measure_pyloudnorm"] = ms / audio_s
    if with_before:
        ms, _ = cpu_ms(lambda: concat_join(pieces), 1)
        per_s["join_concat_before"] = ms / audio_s
    sizes = {}
    for fmt in formats:
        ms, data = cpu_ms(lambda: encode_audio(leveled, SR, fmt), 1 if fmt != "flac" else repeats)
        per_s[f"encode_{fmt}"] = ms / audio_s
        sizes[fmt] = len(data)
    core = sum(per_s[k] for k in CORE)
    return {
        "case": name, "audio_s": round(audio_s, 1), "chunks": n_chunks, "input_dtype": "int16",
        "cpu_ms_per_audio_s": {k: round(v, 4) for k, v in per_s.items()},
        "core_ms_per_audio_s": round(core, 3), "core_meets_target": core <= TARGET_MS,
        "joined_lufs": {"ours": round(ours, 4), "pyloudnorm": None if oracle is None else round(oracle, 4)},
        "encoded_kbps": {f: round(n * 8 / audio_s / 1000, 1) for f, n in sizes.items()},
    }


def print_table(results: list[dict]) -> None:
    steps = list(dict.fromkeys(k for r in results for k in r["cpu_ms_per_audio_s"]))
    head = f"{'CPU ms per audio-second':<30}" + "".join(f"{r['case']:>16}" for r in results)
    print(head)
    print("-" * len(head))
    for step in steps:
        cells = "".join(f"{r['cpu_ms_per_audio_s'].get(step, float('nan')):>16.3f}" for r in results)
        print(f"{step:<30}{cells}")
    cells = "".join(f"{r['core_ms_per_audio_s']:>16.3f}" for r in results)
    print(f"{'trim+join+loudness+flac':<30}{cells}   (target <= {TARGET_MS})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the cheap steps")
    parser.add_argument("--quick", action="store_true", help="20 s and 60 s rows: checks the harness only")
    args = parser.parse_args()
    load_before = os.getloadavg()
    short_s, long_s = (20.0, 60.0) if args.quick else (240.0, 2400.0)
    results = [
        measure_case("240s_20chunks", short_s, 20, sorted(FORMATS), args.repeats, True, True),
        # The long row: the lossless formats only. The lossy encoders cost the same per second
        # as in the short case (which is already past the old 120 s ogg crash) and would take
        # most of a minute here; tests/pipeline/audio/test_encode.py encodes a 10-minute ogg.
        measure_case("40min_200chunks", long_s, 200, ["flac", "wav"], args.repeats, False, False),
    ]
    report = {
        "bench": "finishing", "target_ms_per_audio_s": TARGET_MS, "sample_rate": SR,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(), "numpy": np.__version__, "results": results,
    }
    print_table(results)
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}"
          f" ({report['cpu_count']} CPUs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
