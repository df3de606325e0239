# Entry points. `make demo` runs the local embedded default (a real Triton on
# CPU serving SmolLM2 from model_repository/local); `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup test test-unit config-reference docs
.DEFAULT_GOAL := help

help:
	@echo "make setup   - create .venv and install everything the program, tools and tests need"
	@echo "make demo    - start a local Triton on CPU, send prompts.txt, stop"
	@echo "make test    - run the whole test suite (unit, providers, repository, rules, e2e)"
	@echo "make reference - download and verify the upstream reference data the schema tests read"
	@echo "make bench-local | bench-s3 | bench-hpa - benchmarks that print figures"
	@echo "make docs    - build the documentation site (docs/, mkdocs.yml) into build/site"

# mk/setup-venv.sh says before it starts that the first install compiles llama.cpp (minutes) and
# prints a line per step with the elapsed time; pip's own progress is shown (no --quiet).
$(VENV)/.installed: requirements.txt requirements-test.txt $(wildcard requirements-local.txt)
	PYTHON=$(PYTHON) VENV=$(VENV) sh mk/setup-venv.sh requirements-test.txt $(wildcard requirements-local.txt)
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest tests/unit

# The stack config table of docs/configuration.md (between its config-table markers).
config-reference: setup
	$(PY) -m components.config --write docs/configuration.md

# The documentation site, strict: a broken link or anchor, or a page missing from the nav, fails it.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

-include mk/*.mk
