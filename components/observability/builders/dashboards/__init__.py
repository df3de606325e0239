"""Grafana dashboards generated from the metrics catalog (`components/metrics.py`)."""
