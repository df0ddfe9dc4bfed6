#!/usr/bin/env bash
# Run the Ray-facing tests on one Ray release (the lowest the project supports), in a fresh venv.
#
# Usage: scripts/ci_ray_range.sh VERSION        e.g. scripts/ci_ray_range.sh 2.50.0
# Env:   RAY_RANGE_VENV (default /tmp/ray-range-VERSION), PYTHON (default python3).
# The tests: the local cluster's loopback/token checks, manifest reads through Ray Data,
# the run guards, one whole local run, and `ray job submit` on a real `ray start --head` cluster.
set -euo pipefail

version="${1:?usage: scripts/ci_ray_range.sh RAY_VERSION (e.g. 2.50.0)}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RAY_RANGE_VENV:-/tmp/ray-range-$version}"

rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
# constraints.txt keeps the CPU torch; the test extras as README installs them, then the Ray under test.
"$venv/bin/pip" install -q -c "$repo/constraints.txt" -e "$repo[test]" "ray[data,default]==$version"
"$venv/bin/python" -c "import ray; assert ray.__version__ == '$version', ray.__version__; print('ray', ray.__version__)"

cd "$repo"
# PATH: `ray start` and the job entrypoint (`barkpipe`) must be this venv's.
PATH="$venv/bin:$PATH" exec "$venv/bin/pytest" -p no:cacheprovider -q -rfE \
    tests/pipeline/batch/test_session.py \
    tests/pipeline/test_jobs.py \
    tests/pipeline/manifest/test_manifest.py \
    tests/pipeline/cli/test_run_guards.py \
    "tests/e2e/test_run_local.py::test_every_row_is_written_or_errored" \
    tests/e2e/test_ray_job.py \
    -m "not ceph and not gpu"
