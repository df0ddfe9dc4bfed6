#!/usr/bin/env bash
# The one prepared device run: GPU tests, then the engine benchmark (--gpu). Torch alone plus
# transformers; the official bark package and its small deps travel as wheels in .whl/ if present.
set -u
export PYTHONUNBUFFERED=1
OUTDIR=${OUT:-bench/out}
mkdir -p "$OUTDIR"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/model/test_gpu.py 2>&1 | tail -4
timeout 60 python3 - <<'PY' 2>&1 | tail -3
import tempfile, time
from bark_model import BarkEngine, GenerationRequest
from bark_model.random_weights import make_random_weights
w = make_random_weights(tempfile.mkdtemp(), size="tiny", layout="suno")
e = BarkEngine.from_dir(w, device="cuda", precision="fp16")
e.generate([GenerationRequest.simple("warm up", max_duration_s=2.0)])
t = time.perf_counter(); e.generate([GenerationRequest.simple("graphs?", max_duration_s=2.0)]); dt = time.perf_counter() - t
for stage, ws in e._workspaces.items():
    print(f"{stage}: graphs on={ws.runner.use_graphs} captured={sorted(ws.runner.graphs)}; tiny call {dt:.3f} s")
PY
timeout "${BENCH_TIMEOUT:-480}" python3 bench/engine_bench.py --gpu --budget-s "${BUDGET:-400}" \
    --json "$OUTDIR/engine_bench_gpu.json" "$@" 2>&1 | tee "$OUTDIR/engine_bench_gpu.txt"
