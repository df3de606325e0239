# S3 upload benchmark: ModelRepository's logic against `aws s3 sync` on a local moto server.
# awscli pins its own botocore, so it lives in a venv of its own, never in .venv.
# Options: make bench-s3 S3_BENCH_ARGS="--size-gib 1 --repeat 5"
BENCH_VENV ?= .cache/venv-bench
AWSCLI_VERSION ?= 1.46.2
S3_BENCH_ARGS ?=

.PHONY: bench-s3 bench-weights

$(BENCH_VENV)/.installed:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet awscli==$(AWSCLI_VERSION)
	touch $@

bench-s3: setup $(BENCH_VENV)/.installed
	$(PY) benchmarks/s3_upload.py --aws $(BENCH_VENV)/bin/aws $(S3_BENCH_ARGS)

# Weights staging benchmark: a pod's stage-weights script (aws s3 sync from the mirror) against a plain
# single-stream copy and huggingface_hub's download from a local Hub stand-in, all on loopback.
# Options: make bench-weights WEIGHTS_BENCH_ARGS="--size-mib 2048 --repeat 5"
WEIGHTS_BENCH_ARGS ?=
bench-weights: setup $(BENCH_VENV)/.installed
	$(PY) benchmarks/weights_staging.py --aws $(BENCH_VENV)/bin/aws $(WEIGHTS_BENCH_ARGS)

# The weights mirror's moto test runs the Job's `aws s3 sync` for real (tests/providers/test_weights_mirror_moto.py):
# `make test` installs the same awscli first so a fresh machine runs it instead of skipping it.
test: $(BENCH_VENV)/.installed
