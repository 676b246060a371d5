# Every target creates .venv and installs what it needs first (fresh machine friendly).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench gate clean lock conformance-envs

EXAMPLE_PLUGIN := examples/evaluator-plugin-example

$(STAMP): pyproject.toml constraints.txt $(EXAMPLE_PLUGIN)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	# the example plugin (README "Custom scorers and plugins"), for its test
	$(BIN)/python -m pip install --quiet --no-deps -e $(EXAMPLE_PLUGIN)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/evaluator run

# One pytest process per core, at most 4 (pytest-xdist; each takes its own Redis database);
# loadgroup keeps the modules marked xdist_group on one worker, in order. PYTEST_ARGS= runs serially.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadgroup
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# One virtualenv per instrumentation package set for tests/test_conformance.py, under
# .venv-conformance/ (each rebuilt only when its requirements or constraints.txt changed).
conformance-envs: $(STAMP)
	$(BIN)/python scripts/conformance_envs.py

# ruff (pycodestyle, pyflakes, bugbear, import order, pyupgrade) and mypy; settings in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check evaluator tests benchmarks scripts
	$(BIN)/mypy evaluator

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The peer libraries of bench_peers come with the `bench` extra; BENCH_ARGS=--quick for the quick mode.
# The package is compiled to bytecode first, as an installed one is: where PYTHONDONTWRITEBYTECODE
# is set, an editable install would compile every module it imports again in each timed command.
bench: $(BENCH_STAMP)
	$(BIN)/python -m compileall -q evaluator
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The CI regression gate, locally: replay the bundled example dataset with the offline judge and
# gate the run against the dataset's expected labels (docs/ci/evaluator-gate.yml does the same in CI).
GATE_DIR := out/gate
gate: $(STAMP)
	rm -rf $(GATE_DIR) && mkdir -p $(GATE_DIR)
	$(BIN)/evaluator replay datasets/example_regression.jsonl --judge offline \
		--db $(GATE_DIR)/gate.duckdb --run-id gate-example
	$(BIN)/evaluator gate --db $(GATE_DIR)/gate.duckdb --run gate-example \
		--baseline datasets/example_regression.jsonl \
		--junit $(GATE_DIR)/junit.xml --markdown $(GATE_DIR)/summary.md

# Refresh the constraints file from what is installed (after changing pyproject.toml).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .venv-conformance evaluator.duckdb evaluator.duckdb.wal .pytest_cache
