# S3 upload benchmark: ModelRepository's logic against `aws s3 sync` on a local moto server.
# awscli pins its own botocore, so it lives in a venv of its own, never in .venv.
# Options: make bench-s3 S3_BENCH_ARGS="--size-gib 1 --repeat 5"
BENCH_VENV ?= .cache/venv-bench
AWSCLI_VERSION ?= 1.46.2
S3_BENCH_ARGS ?=

.PHONY: bench-s3

$(BENCH_VENV)/.installed:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet awscli==$(AWSCLI_VERSION)
	touch $@

bench-s3: setup $(BENCH_VENV)/.installed
	$(PY) benchmarks/s3_upload.py --aws $(BENCH_VENV)/bin/aws $(S3_BENCH_ARGS)
