# Monitoring and autoscaling (components/catalog/serving_metrics.py, components/monitoring*.py).
# The rule and e2e tests need Prometheus and promtool: apt-get install -y prometheus.
.PHONY: bench-hpa bench-vllm-metrics test-rules

bench-hpa: setup  ## each backend's default HPA signal vs the seeds' metric, simulated backends + real Prometheus (~5 min)
	$(PY) benchmarks/hpa_metric_response.py $(BENCH_HPA_ARGS)

bench-vllm-metrics: setup  ## per-call cost of the Python backend metric observe() vLLM's REPORT_CUSTOM_METRICS makes per decode step (~1 min)
	$(PY) benchmarks/vllm_metrics_cost.py

test-rules: setup  ## promtool check/test of the generated recording rules
	$(PY) -m pytest tests/rules
