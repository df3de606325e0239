"""Helm values of the monitoring stack, as pure functions of the stack config.

Every key set here exists in the chart's default values (checked by
tests/unit/test_monitoring_values.py against ../shared/reference/helm-values/);
free-form maps (resources, storageSpec, nodeSelector, affinity...) are listed in
`FREE_FORM` per chart.
"""
from __future__ import annotations

from typing import Any

from components import metrics
from components.config import MonitoringConfig
from components.dashboards import triton as triton_dashboard

NAMESPACE = "monitoring"
# Helm release names; the charts derive their object names from them.
KPS_RELEASE = "kps"
ADAPTER_RELEASE = "prometheus-adapter"
DCGM_RELEASE = "dcgm-exporter"

GRAFANA_ADMIN_USER = "admin"
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"
GRAFANA_SERVICE = f"{KPS_RELEASE}-grafana"  # grafana subchart: <release>-grafana, port 80
GRAFANA_SERVICE_PORT = 80
PROMETHEUS_SERVICE = f"{KPS_RELEASE}-prometheus"  # fullnameOverride + "-prometheus"
PROMETHEUS_PORT = 9090

# Nodes Karpenter launches from GPU instance types carry this well-known label.
GPU_NODE_LABEL = "karpenter.k8s.aws/instance-gpu-count"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

FREE_FORM = {
    "kube-prometheus-stack": {
        "prometheus.prometheusSpec.storageSpec",
    },
    "prometheus-adapter": set(),
    "dcgm-exporter": {"affinity"},
}


def prometheus_url(namespace: str = NAMESPACE) -> str:
    """In-cluster URL of Prometheus (what prometheus-adapter and kubectl port-forward target)."""
    return f"http://{PROMETHEUS_SERVICE}.{namespace}.svc:{PROMETHEUS_PORT}"


def kube_prometheus_stack_values(
    monitoring: MonitoringConfig, grafana_secret_name: str, storage_class: str
) -> dict[str, Any]:
    """kube-prometheus-stack: Prometheus sized from config, Grafana in-cluster with an existing admin Secret."""
    return {
        "fullnameOverride": KPS_RELEASE,
        "prometheus": {
            "prometheusSpec": {
                "retention": monitoring.retention,
                "scrapeInterval": monitoring.scrape_interval,
                "evaluationInterval": monitoring.scrape_interval,
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "storageClassName": storage_class,
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": monitoring.storage_size}},
                        }
                    }
                },
                # Select every PodMonitor/ServiceMonitor/PrometheusRule/Probe in the cluster,
                # not only those labelled with this release (Triton's PodMonitors live in the
                # model namespaces, the DCGM ServiceMonitor comes from another release).
                "podMonitorSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
            },
        },
        "grafana": {
            "enabled": True,
            # In-cluster only: the chart's Service is ClusterIP; no Ingress. Reach it with
            # kubectl port-forward (a stack output prints the command).
            "ingress": {"enabled": False},
            "adminUser": GRAFANA_ADMIN_USER,
            "admin": {
                "existingSecret": grafana_secret_name,
                "userKey": GRAFANA_USER_KEY,
                "passwordKey": GRAFANA_PASSWORD_KEY,
            },
            "defaultDashboardsEnabled": True,
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": triton_dashboard.SIDECAR_LABEL,
                    "labelValue": triton_dashboard.SIDECAR_LABEL_VALUE,
                    "searchNamespace": "ALL",
                },
            },
        },
    }


def prometheus_adapter_values(namespace: str = NAMESPACE) -> dict[str, Any]:
    """prometheus-adapter: only the project's per-pod rules, reading the kube-prometheus-stack Prometheus."""
    return {
        "prometheus": {"url": f"http://{PROMETHEUS_SERVICE}.{namespace}.svc", "port": PROMETHEUS_PORT},
        # Re-list series often enough that a new Triton pod's record is served within ~30 s.
        "metricsRelistInterval": "30s",
        "rules": {"default": False, "custom": metrics.adapter_rules()},
    }


def dcgm_exporter_values(monitoring: MonitoringConfig) -> dict[str, Any]:
    """DCGM exporter on GPU nodes only (tolerating their taint), scraped through its ServiceMonitor."""
    return {
        "tolerations": [GPU_TAINT],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": GPU_NODE_LABEL, "operator": "Gt", "values": ["0"]}]}
                    ]
                }
            }
        },
        "serviceMonitor": {
            "enabled": True,
            "interval": monitoring.scrape_interval,
            # Keep the namespace/pod labels DCGM puts on each GPU's series (the pod holding
            # the GPU) instead of renaming them to exported_*: dashboards join them to Triton pods.
            "honorLabels": True,
        },
    }
