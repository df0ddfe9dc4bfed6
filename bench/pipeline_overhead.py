"""Pipeline overhead with tiny random weights: wall time of `run` against time inside engine.generate."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "pipeline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-duration", type=float, default=1.0, help="seconds of audio per chunk")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from bark_model.random_weights import make_random_weights
    from pipeline.config import validate_config
    from pipeline.batch.run import run

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    OUT.mkdir(parents=True, exist_ok=True)
    weights = OUT / "tiny"
    if not weights.exists():
        make_random_weights(weights, size="tiny", layout="suno")
    rows = [{"id": f"r{i:05d}", "text": f"Row number {i} says a few short words here."} for i in range(args.rows)]
    pq.write_table(pa.Table.from_pylist(rows), OUT / "manifest.parquet")
    start = time.perf_counter()
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=512 * 2**20, log_to_driver=False)
    ray_init_s = time.perf_counter() - start
    cfg = validate_config({
        "input": {"path": str(OUT / "manifest.parquet")},
        "output": {"path": str(OUT / "run"), "overwrite": True, "format": "flac"},
        "model": {"weights": str(weights), "device": "cpu"},
        "generation": {"max_duration": args.max_duration},
        "compute": {"actors": args.actors, "cpus_per_actor": 0.5, "batch_size": args.batch,
                    "window_rows": args.window},
    })
    summary = run(cfg, progress=False)
    ray.shutdown()
    print(json.dumps({"ray_init_s": round(ray_init_s, 2), "load_average": os.getloadavg()[0],
                      **{k: v for k, v in summary["this_run"].items() if k != "error_samples"}}, indent=1))


if __name__ == "__main__":
    main()
