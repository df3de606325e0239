# Upstream reference data for the schema tests (CRDs, Helm chart defaults, TensorRT-LLM templates,
# NVIDIA's multi-node tutorial files): `make reference` downloads every file that
# reference/manifest.toml pins into $(REFERENCE_CACHE), verifies each sha256 and refuses a
# mismatch; files already there with the right sha256 are not fetched again. Standard library
# only, so it needs no `make setup`. TRITONLLM_REFERENCE_BASE_URL replaces
# https://raw.githubusercontent.com in every URL (a mirror).
PYTHON ?= python3
REFERENCE_CACHE ?= .cache/reference

.PHONY: reference

reference:  ## download and verify the upstream reference data the schema tests read
	$(PYTHON) -m tools.reference --dest $(REFERENCE_CACHE)
