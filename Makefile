# barkpipe: `make smoke` sets up and runs the main job on tiny random weights; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast smoke bench bench-gpu clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	# Parity oracles without their dependencies (see the comment in pyproject.toml).
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps bark==0.1.5 encodec==0.1.1
	touch $@

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not ceph"

weights/tiny/RANDOM_WEIGHTS.txt: | $(STAMP)
	$(BIN)/barkpipe weights make-random --size tiny --layout suno weights/tiny

examples/smoke_manifest.parquet: | $(STAMP)
	$(BIN)/python examples/make_smoke_manifest.py

smoke: setup weights/tiny/RANDOM_WEIGHTS.txt examples/smoke_manifest.parquet
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} RAY_USAGE_STATS_ENABLED=0 $(BIN)/barkpipe run configs/smoke.yaml

bench: setup
	$(BIN)/python bench/engine_bench.py --quick

bench-gpu:
	python3 bench/engine_bench.py --gpu

clean:
	rm -rf $(VENV) out weights/tiny
