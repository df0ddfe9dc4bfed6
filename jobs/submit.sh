#!/usr/bin/env bash
# Submit the dataset-generation job to a running Ray cluster; extra arguments go to `barkpipe run`.
#
# Usage: RAY_ADDRESS=http://ray-head:8265 jobs/submit.sh [--set key=value ...]
# Blocks while tailing the job's logs; exits non-zero when the job fails.
set -euo pipefail

: "${RAY_ADDRESS:?set RAY_ADDRESS to the Ray job server, e.g. http://ray-head:8265}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

exec ray job submit --address "$RAY_ADDRESS" --runtime-env jobs/runtime_env.yaml --working-dir . \
    -- barkpipe run jobs/dataset.yaml "$@"
