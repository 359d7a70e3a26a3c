# Two commands on a fresh machine: `make demo` (the web app on the bundled model) and `make test`.
# The virtual environment is created on first use and reused while pyproject.toml is unchanged.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-$(shell sha256sum pyproject.toml | cut -c1-16)
HOST ?= 127.0.0.1
PORT ?= 7860
# setuptools explains editable installs at length on every install; the install itself is fine
QUIET_PIP := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: install demo slots test test-slow test-all lint bench

$(DEPS_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(QUIET_PIP) $(PY) -m pip install -q -e '.[test]'
	touch $@

# Re-point the (possibly cached, shared) venv at this checkout; quick because the deps are there.
install: $(DEPS_STAMP)
	$(QUIET_PIP) $(PY) -m pip install -q --no-deps --no-build-isolation -e .

demo: install
	$(VENV)/bin/glmix-vis app --host $(HOST) --port $(PORT)

slots: install
	$(VENV)/bin/glmix-vis slots

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

test-all: install
	$(PY) -m pytest -q -m 'slow or not slow'

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) eval/bench_backbone.py
