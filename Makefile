# Entry points. `make demo` runs the local embedded default (a real Triton on
# CPU serving SmolLM2 from model_repository/local); `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup test test-fast test-unit lint config-reference docs
.DEFAULT_GOAL := help

help:
	@echo "make setup   - create .venv and install everything the program, tools and tests need"
	@echo "make demo    - start a local Triton on CPU, send prompts.txt, stop"
	@echo "make test    - run the whole test suite (static checks, unit, providers, repository, rules, multinode, e2e)"
	@echo "make test-fast - the unit layer (program under mocks, builders), no servers: under 2 minutes"
	@echo "make lint    - the static checks alone: ruff, mypy, import rules"
	@echo "make reference - download and verify the upstream reference data the schema tests read"
	@echo "make bench-local | bench-s3 | bench-hpa - benchmarks that print figures"
	@echo "make docs    - build the documentation site (docs/, mkdocs.yml) into build/site"

# mk/setup-venv.sh says before it starts that the first install compiles llama.cpp (minutes) and
# prints a line per step with the elapsed time; pip's own progress is shown (no --quiet).
$(VENV)/.installed: requirements.txt requirements-test.txt $(wildcard requirements-local.txt)
	PYTHON=$(PYTHON) VENV=$(VENV) sh mk/setup-venv.sh requirements-test.txt $(wildcard requirements-local.txt)
	touch $@

setup: $(VENV)/.installed

# Two workers (pytest-xdist): most of the suite waits on servers (Triton, Prometheus, sshd), so two
# processes keep both cores busy. worksteal hands a slow test's neighbours to the idle worker.
PYTEST_PARALLEL ?= -n 2 --dist worksteal

test: setup
	$(PY) -m pytest $(PYTEST_PARALLEL)

# The unit layer: the program under mocks for every stack and the pure builders; no server, no
# model, no static checks (make lint).
test-fast: setup
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not e2e" tests/unit --ignore=tests/unit/test_static_checks.py

test-unit: setup
	$(PY) -m pytest $(PYTEST_PARALLEL) tests/unit

lint: setup
	$(PY) -m pytest tests/unit/test_static_checks.py

# The stack config table of docs/configuration.md (between its config-table markers).
config-reference: setup
	$(PY) -m components.config --write docs/configuration.md

# The documentation site, strict: a broken link or anchor, or a page missing from the nav, fails it.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

-include mk/*.mk
