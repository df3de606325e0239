# Local CPU serving: a real Triton (from the nvidia-pytriton wheel) serving SmolLM2-135M-Instruct
# from model_repository/local; the client, the AIPerf benchmark and the Triton-overhead benchmark.
# Included from the top-level Makefile, which defines PY/PIP/VENV and the `setup` target
# (.venv with requirements-test.txt + requirements-local.txt). Defaults below only apply alone.
VENV ?= .venv
PY ?= $(VENV)/bin/python

LOCAL_MODEL ?= smollm2
LOCAL_PROMPTS ?= prompts.txt
LOCAL_MAX_TOKENS ?= 64
# Greedy decoding: the demo gives the same answers on every run (sampling from a 135M model
# wanders, sometimes rudely). Set DEMO_SAMPLING="--temperature 0.7 --seed 1" to sample instead.
DEMO_SAMPLING ?= --temperature 0
DEMO_RESULTS ?= results/demo-results.txt
BENCH_PRESETS ?= sweep chat seed-500in-5out
# 0 = any free port; set e.g. DEMO_PORTS="--http-port 8000 --grpc-port 8001 --metrics-port 8002"
DEMO_PORTS ?= --http-port 0 --grpc-port 0 --metrics-port 0

.PHONY: demo bench-local bench-local-setup serve-local test-local

# Start Triton on CPU, send prompts.txt over gRPC streaming, print one line per request, stop.
demo: setup
	$(PY) -m tritonllm serve $(DEMO_PORTS) --quiet -- \
	  $(PY) -m tritonllm client --model-name $(LOCAL_MODEL) --input-prompts $(LOCAL_PROMPTS) \
	  --max-tokens $(LOCAL_MAX_TOKENS) $(DEMO_SAMPLING) --results-file $(DEMO_RESULTS)

# Serve in the foreground on the standard ports (Ctrl-C stops it).
serve-local: setup
	$(PY) -m tritonllm serve

# AIPerf in its own virtualenv (.cache/aiperf-venv) + the local model's tokenizer, exported offline.
bench-local-setup: setup
	$(PY) -m tritonllm bench --setup

# Triton vs in-process (TTFT, tokens/s, warm load), then the AIPerf presets against a fresh server.
bench-local: bench-local-setup
	$(PY) benchmarks/local_overhead.py --json results/local-overhead.json
	$(PY) -m tritonllm serve $(DEMO_PORTS) --quiet -- sh -c '\
	  for preset in $(BENCH_PRESETS); do \
	    $(PY) -m tritonllm bench --model-name $(LOCAL_MODEL) --preset $$preset \
	      --output-dir results/bench/$$preset || exit 1; \
	  done'

# This part's tests: every config.pbtxt, and the end-to-end tests against a real local Triton.
test-local: setup bench-local-setup
	$(PY) -m pytest tests/repository tests/e2e/test_local_engine.py tests/e2e/test_local_serve.py \
	  tests/e2e/test_local_server.py tests/e2e/test_local_client.py tests/e2e/test_local_bench.py
