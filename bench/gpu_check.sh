#!/usr/bin/env bash
# The one prepared device run (issue 9), ~9 minutes: GPU tests (graphs == eager, compiled == eager,
# attention kernels), then the engine benchmark: ours fp16 compiled / uncompiled, int8 (and fp8
# where bark_model/fp8.py exists) against transformers fp16, large and small, batch 1/64/256.
# Needs torch (CUDA), transformers, safetensors, tokenizers; no Ray, typer or pydantic.
#
#   bash bench/gpu_check.sh          # on the device; results under $OUT (default bench/out/gpu_check)
#   bash bench/gpu_check.sh --dry    # here, on CPU: tiny weights, the same steps in about a minute or two
# Knobs (environment): BUDGET (bench seconds, default 270), BENCH_TIMEOUT (hard stop, default 330),
# TEST_TIMEOUT (default 200), SIZES (default large,small).
set -u
export PYTHONUNBUFFERED=1
OUTDIR=${OUT:-bench/out/gpu_check}
mkdir -p "$OUTDIR"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/barkpipe-inductor}  # tests' compiles help the bench
PY=${PYTHON:-python3}
DRY=0
[ "${1:-}" = "--dry" ] && DRY=1 && shift
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start )) s] $*"; }

if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
stamp "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
$PY - <<'PY'
import sys
for name in ("ray", "typer", "pydantic"):  # the engine and the bench must import without these
    sys.modules[name] = None
import torch, bark_model, bark_model.compile, bark_model.sdpa_check  # noqa: F401
sys.path[:0] = ["bench"]
import engine_bench, systems  # noqa: F401
from importlib import metadata
try:
    tf = metadata.version("transformers")
except metadata.PackageNotFoundError:
    tf = "absent"
cap = torch.cuda.get_device_capability() if torch.cuda.is_available() else None
print(f"torch {torch.__version__}, transformers {tf}, capability {cap}; bark_model + bench import without ray/typer/pydantic")
PY

stamp "GPU tests (CUDA graphs == eager, compiled == eager, attention kernels)"
TESTS=(tests/bark_model/test_gpu.py tests/bark_model/test_compile.py)
[ $DRY = 1 ] && TESTS+=(-m "not slow")  # on CPU: test_gpu skips itself; the inductor build is the slow one
timeout "${TEST_TIMEOUT:-200}" $PY -m pytest -q -p no:cacheprovider -rs "${TESTS[@]}" 2>&1 | tee "$OUTDIR/gpu_tests.txt" | tail -8

stamp "engine benchmark"
PRECISIONS=fp16,int8
# fp8 only once the engine accepts it (bark_model/fp8.py is the module swap; the precision is wired in engine.py).
$PY -c "from bark_model.device import resolve_dtype; resolve_dtype('fp8')" 2>/dev/null && PRECISIONS=fp16,fp8,int8
if [ $DRY = 1 ]; then
    BENCH_ARGS=(--dry --device cpu --precisions fp32,int8 --compile auto,off --extra-batches 1)  # auto = off on CPU
else
    # ours fp16 compiled at every batch, transformers fp16 beside it (the headline ratio), then
    # ours fp16 uncompiled (today's CUDA graphs) and the lower precisions at batch 64.
    BENCH_ARGS=(--gpu --systems ours,hf --sizes "${SIZES:-large,small}" --batches 1,64,256 --hf-batches 1,64,256
                --precisions "$PRECISIONS" --compile on,off --extra-batches 1,64 --tokens 256 --repeats 1
                --warmup short --agree-tokens 0)
fi
timeout "${BENCH_TIMEOUT:-330}" $PY bench/engine_bench.py "${BENCH_ARGS[@]}" --budget-s "${BUDGET:-270}" \
    --json "$OUTDIR/engine_bench_gpu.json" "$@" 2>&1 | tee "$OUTDIR/engine_bench_gpu.txt" | grep -v "^   batch"
stamp "done; results in $OUTDIR"
