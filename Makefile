# Two commands on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# Re-install only when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,experiments]"
	touch $(STAMP)

demo: install
	$(BIN)/python -m sgns_jax.demo

# Two test processes (pytest-xdist): most tests compile with one core, and CI has two.
test: install
	$(BIN)/python -m pytest -x -n 2

# Everything but the tests marked slow (multi-device subprocesses, experiment runs, statistics).
test-fast: install
	$(BIN)/python -m pytest -x -n 2 -m "not slow"

bench: install
	$(BIN)/python experiments/perf/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
