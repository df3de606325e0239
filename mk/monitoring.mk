# Monitoring and autoscaling (components/metrics.py, components/monitoring*.py).
# The rule and e2e tests need Prometheus and promtool: apt-get install -y prometheus.
.PHONY: bench-hpa test-rules

bench-hpa: setup  ## HPA metrics vs the seeds' metric on a real local Triton + Prometheus (prints figures, ~8 min)
	$(PY) benchmarks/hpa_metric_response.py $(BENCH_HPA_ARGS)

test-rules: setup  ## promtool check/test of the generated recording rules
	$(PY) -m pytest tests/rules
