#!/usr/bin/env bash
# A dataset consumer with no barkpipe code, checked from outside after `make smoke`: a redo of one row
# (so the output has history), the output exported both ways by .venv, then read back in a venv of its
# own (pandas, datasets, webdataset, soundfile; no barkpipe) by .ci/read_export.py.
# datasets is not in the test extra: it caps fsspec, which would hold back s3fs there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "consumer-check: $*" >&2; }
work=$(mktemp -d /tmp/barkpipe-consumer-XXXX)
trap 'rm -rf "$work"' EXIT

# A copy of the smoke output: the redo must not change what the other checks read.
cp -r out/smoke "$work/output"
sed -e 's|^  path: out/smoke|  path: '"$work/output"'|' configs/smoke.yaml >"$work/smoke.yaml"
.venv/bin/barkpipe run "$work/smoke.yaml" --redo greeting
.venv/bin/barkpipe export "$work/output" --format hf --out "$work/hf"
.venv/bin/barkpipe export "$work/output" --format webdataset --out "$work/wds"

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q datasets webdataset soundfile pandas pyarrow
"$work/venv/bin/python" .ci/read_export.py "$work/output" "$work/hf" "$work/wds" greeting
log "ok: pandas, datasets and webdataset read each done id once, with audio that plays"
