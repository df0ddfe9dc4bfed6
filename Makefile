# barkpipe: `make smoke` sets up and runs the main job on tiny random weights; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: the job's own dependencies, and those plus the test extras (transformers, moto...).
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test

PHONY_EXTRAS := setup-audiobook setup-whisper
.PHONY: setup $(PHONY_EXTRAS) setup-test test test-fast lint types format smoke wheel-check config-doc bench bench-gpu clean

$(BASE_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	# Parity oracles without their dependencies (see the comment in pyproject.toml).
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps bark==0.1.5 encodec==0.1.1
	# Resemblyzer, the oracle our speaker encoder is compared with (tests only): it requires the webrtcvad
	# sdist (a compiler, and pkg_resources), whose module webrtcvad-wheels provides, so no dependencies.
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps resemblyzer==0.1.4
	touch $@

setup: $(BASE_STAMP)

# One command per extra (pyproject.toml's optional-dependencies): `make setup-audiobook` for `barkpipe book` and
# the listening checks, `make setup-whisper` for the faster-whisper speech check.
$(PHONY_EXTRAS): setup-%: $(BASE_STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$*]'

setup-test: $(TEST_STAMP)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -ra

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not ceph"

# Format and lint of the two packages (settings in pyproject.toml); .ci/run runs it before the tests.
# `make types` (mypy on both packages) gates CI too.
LINT_PATHS := bark_model pipeline
lint: $(TEST_STAMP)
	@status=0; \
	$(BIN)/ruff format --check $(LINT_PATHS) || status=1; \
	$(BIN)/ruff check $(LINT_PATHS) || status=1; \
	exit $$status

types: $(TEST_STAMP)
	$(BIN)/mypy

# Apply the formatter and ruff's safe fixes (review the diff); what remains is for a person.
format: $(TEST_STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

# Build the wheel, install it in a fresh venv (reusing this one's packages) and run `barkpipe say`.
wheel-check: $(TEST_STAMP)
	$(BIN)/python -m pytest -q tests/project/test_packaging.py -m slow

# Regenerate the config reference in docs/PIPELINE.md from the pydantic models.
config-doc: $(BASE_STAMP)
	$(BIN)/python scripts/config_reference.py

weights/tiny/RANDOM_WEIGHTS.txt: | $(BASE_STAMP)
	$(BIN)/barkpipe weights make-random --size tiny --layout suno weights/tiny

examples/smoke_manifest.parquet: | $(BASE_STAMP)
	$(BIN)/python examples/make_smoke_manifest.py

smoke: $(BASE_STAMP) weights/tiny/RANDOM_WEIGHTS.txt examples/smoke_manifest.parquet
	$(BIN)/barkpipe run configs/smoke.yaml

bench: $(TEST_STAMP)
	$(BIN)/python bench/engine_bench.py --quick

bench-gpu:
	python3 bench/engine_bench.py --gpu

# Everything the targets above leave behind (the venv, weights, outputs, build files).
clean:
	rm -rf $(VENV) out weights/tiny bench/out build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
