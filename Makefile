# The two commands of the README: `make demo` and `make test`. Everything else is a helper of theirs.
# Installs come from the lock files (exact versions, sha256 hashes): a fresh machine gets exactly the
# tested versions. `make lock` regenerates them after a change to pyproject.toml's dependencies
# (`make lock UPGRADE=1` to move every pin to the newest allowed version: a deliberate commit).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
DEMO_LOCK := requirements-demo.lock
LOCK_FLAGS := --generate-hashes --python-version 3.11 --quiet $(if $(UPGRADE),--upgrade,)

.PHONY: demo test lint typecheck pytest bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The default install plus the demo's pictures, from the demo lock.
$(VENV)/.installed: $(DEMO_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r $(DEMO_LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Every extra (dev, postgres, spark, bench and the domains'), from the full lock.
$(VENV)/.installed-dev: $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
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

bench: $(VENV)/.installed-dev
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

# Regenerate both lock files from pyproject.toml (uv from PyPI); the demo lock is a subset of the full one.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --all-extras $(LOCK_FLAGS) -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml --extra demo $(LOCK_FLAGS) -c $(LOCK) -o $(DEMO_LOCK)

clean:
	rm -rf $(VENV) $(SF_ENV) .pytest_cache .mypy_cache .ruff_cache
