# The two commands of the README: `make demo` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/datavalley demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy src

# SecretFlow's PSI engine cannot share the main environment (numpy < 2): it gets its own (docs/PSI.md §9).
SF_ENV ?= .venv-secretflow
$(SF_ENV)/.installed: src/datavalley/psi/secretflow/requirements.txt | $(VENV)/.installed
	$(BIN)/datavalley psi secretflow-setup --env $(SF_ENV)
	touch $@

pytest: $(VENV)/.installed-dev $(SF_ENV)/.installed
	DATAVALLEY_SECRETFLOW_ENV=$(abspath $(SF_ENV)) $(BIN)/pytest

test: lint typecheck pytest

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(VENV)/.installed $(VENV)/.installed-dev $@

bench: $(VENV)/.installed-bench
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) $(SF_ENV) .pytest_cache .mypy_cache .ruff_cache
