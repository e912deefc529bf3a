# Everything runs from the project's own virtual environment in .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test run_hyperopt run_hyperopt_worker bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# The search: embedded (this machine) unless MONGO_URL is set; settings from HKS_* variables.
run_hyperopt: $(STAMP)
	$(PY) -m optimizer

# A worker for the experiment EXPERIMENT_NAME in the database MONGO_URL.
run_hyperopt_worker: $(STAMP)
	$(PY) -m worker

# The coordination-overhead benchmark against hyperopt and Optuna (bench/README.md).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) bench/overhead.py
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache
