"""Monitoring: kube-prometheus-stack, Grafana admin secret and dashboard, DCGM exporter,
prometheus-adapter, and the recording rules the HPAs read.

A thin shell over pure builders: Helm values in `components/observability/builders/monitoring_values.py`,
rules, adapter rules and the PodMonitor in `components/catalog/serving_metrics.py`, the dashboard
in `components/observability/builders/dashboards/triton.py`.

The Grafana admin password is generated (pulumi_random), stored in AWS Secrets
Manager, and handed to Grafana through a Kubernetes Secret built from the same
Pulumi secret output; Helm values only name that Secret. Nothing prints or
stores it in plain text: read it with `grafana_read_password_command`.
"""

from __future__ import annotations

from components.observability.builders import monitoring_values

GRAFANA_SECRET_K8S_NAME = "grafana-admin"
PROMETHEUS_STORAGE_CLASS = "tritonllm-monitoring-gp3"


def read_password_command(secret_name: str, region: str) -> str:
    return (
        f"aws secretsmanager get-secret-value --region {region} --secret-id {secret_name} "
        "--query SecretString --output text"
    )


def port_forward_command(namespace: str = monitoring_values.NAMESPACE, local_port: int = 3000) -> str:
    return (
        f"kubectl -n {namespace} port-forward svc/{monitoring_values.GRAFANA_SERVICE} "
        f"{local_port}:{monitoring_values.GRAFANA_SERVICE_PORT}"
    )
