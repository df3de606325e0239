"""Monitoring's pure helpers: the commands the stack outputs print (the component is
components/observability/resources/monitoring.py).
"""

from __future__ import annotations

from typing import Any

from components.observability.builders import monitoring_values
from components.platform.builders import karpenter

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


def alertmanager_port_forward_command(namespace: str = monitoring_values.NAMESPACE, local_port: int = 9093) -> str:
    """Alertmanager's UI (firing and silenced alerts) on localhost; the chart's Service is
    `<fullname>-alertmanager`, port 9093."""
    return (
        f"kubectl -n {namespace} port-forward svc/{monitoring_values.ALERTMANAGER_NAME} "
        f"{local_port}:{monitoring_values.ALERTMANAGER_SERVICE_PORT}"
    )


def karpenter_service_monitor_manifest(namespace: str = monitoring_values.NAMESPACE) -> dict[str, Any]:
    """ServiceMonitor for Karpenter's controller metrics (the Karpenter launch alert reads them).

    Made here, not by the Karpenter chart's `serviceMonitor.enabled`: the chart renders its ServiceMonitor
    only when the cluster already serves monitoring.coreos.com/v1 at install time (karpenter 1.14.1
    charts/karpenter/templates/servicemonitor.yaml, `.Capabilities.APIVersions.Has`), and Karpenter is
    installed before kube-prometheus-stack brings that CRD, so the flag would silently create nothing.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "karpenter",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tritonllm"},
        },
        "spec": {
            "namespaceSelector": {"matchNames": [karpenter.NAMESPACE]},
            "selector": {"matchLabels": dict(karpenter.SELECTOR_LABELS)},
            "endpoints": [{"port": karpenter.METRICS_PORT_NAME, "path": "/metrics"}],
        },
    }
