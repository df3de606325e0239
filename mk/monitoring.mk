# Monitoring and autoscaling (components/metrics.py, components/monitoring*.py).
# The rule and e2e tests need Prometheus and promtool: apt-get install -y prometheus.
.PHONY: bench-hpa test-rules

bench-hpa: setup  ## each backend's default HPA signal vs the seeds' metric, simulated backends + real Prometheus (~5 min)
	$(PY) benchmarks/hpa_metric_response.py $(BENCH_HPA_ARGS)

test-rules: setup  ## promtool check/test of the generated recording rules
	$(PY) -m pytest tests/rules
