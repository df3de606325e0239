"""Grafana dashboards generated from the metrics catalog (`components/catalog/serving_metrics.py`)."""
