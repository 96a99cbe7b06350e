# The two commands a new user needs:  `make demo` (the whole pipeline, offline, on the synthetic dataset)
# and `make test` (the test suite). Both create .venv and install the pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo scale-demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

# Issue 8's demonstration: scale schedules and batch samplers compared on the synthetic set (~1 h on 2 CPU cores).
scale-demo: $(STAMP)
	bash scripts/scale_demo.sh

test: $(STAMP)
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) reports/index.html results/benchmark.db results/demo.db
