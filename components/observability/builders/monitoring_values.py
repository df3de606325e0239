"""Helm values of the monitoring stack, as pure functions of the stack config.

Every key set here exists in the chart's default values (checked by
tests/unit/test_monitoring_values.py against ../shared/reference/helm-values/);
free-form maps (resources, storageSpec, nodeSelector, affinity...) are listed in
`FREE_FORM` per chart.
"""

from __future__ import annotations

from typing import Any

from components.config import MonitoringConfig
from components.observability.builders import metrics
from components.observability.builders.dashboards import triton as triton_dashboard

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
# The Prometheus pods, as the chart's own Service selects them (kube-prometheus-stack 88.5.3
# templates/prometheus/service.yaml: `app.kubernetes.io/name: prometheus` and
# `operator.prometheus.io/name: <prometheus.crname>`, the Prometheus resource's name, which
# _helpers.tpl makes `<fullname>-prometheus` while cleanPrometheusOperatorObjectNames is false, its
# default). The Prometheus Operator (v0.93.1 for this chart) puts both labels on every pod it runs.
# Model NetworkPolicies admit these pods, and only these, to Triton's metrics port.
PROMETHEUS_CR_NAME = f"{KPS_RELEASE}-prometheus"
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": PROMETHEUS_CR_NAME}

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


# Control-plane components EKS runs itself: their metrics endpoints are not reachable from the
# cluster (kube-controller-manager, kube-scheduler and etcd run in the AWS-managed control plane), so
# the chart's ServiceMonitors would scrape nothing and their alerts (KubeControllerManagerDown,
# KubeSchedulerDown, etcd*) would fire forever. kube-proxy runs as an EKS add-on but binds its
# metrics to 127.0.0.1:10249 by default, so KubeProxyDown fires too. Each entry: the chart's
# top-level component key -> the defaultRules.rules groups that alert or record on it.
EKS_UNREACHABLE = {
    "kubeControllerManager": ("kubeControllerManager",),
    "kubeScheduler": ("kubeSchedulerAlerting", "kubeSchedulerRecording"),
    "kubeEtcd": ("etcd",),
    "kubeProxy": ("kubeProxy",),
}


def kube_prometheus_stack_values(
    monitoring: MonitoringConfig, grafana_secret_name: str, storage_class: str
) -> dict[str, Any]:
    """kube-prometheus-stack: Prometheus sized from config, Grafana in-cluster with an existing admin Secret."""
    return {
        "fullnameOverride": KPS_RELEASE,
        **{component: {"enabled": False} for component in EKS_UNREACHABLE},
        "defaultRules": {"rules": {group: False for groups in EKS_UNREACHABLE.values() for group in groups}},
        "prometheus": {
            "prometheusSpec": {
                "retention": monitoring.retention,
                # Delete the oldest blocks before the volume fills: a full volume stops Prometheus
                # (and with it every HPA metric).
                "retentionSize": monitoring.retention_size,
                "scrapeInterval": monitoring.scrape_interval,
                # Rules (the HPA's records) are evaluated as often as series are scraped; their
                # windows follow the interval (components/catalog/serving_metrics.py window_for).
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


def prometheus_adapter_values(
    namespace: str = NAMESPACE, scrape_interval: str = metrics.DEFAULT_SCRAPE_INTERVAL
) -> dict[str, Any]:
    """prometheus-adapter: only the project's per-pod rules, reading the kube-prometheus-stack Prometheus.

    Its series listing is tied to the rule evaluation interval (metrics.adapter_timing): with the
    chart's 1m relist and a max-age equal to it, a record evaluated less often than that drops out
    of the custom-metrics API between listings.
    """
    timing = metrics.adapter_timing(scrape_interval)
    return {
        "prometheus": {"url": f"http://{PROMETHEUS_SERVICE}.{namespace}.svc", "port": PROMETHEUS_PORT},
        "metricsRelistInterval": timing.relist_interval,
        # prometheus-adapter cmd/adapter/adapter.go: --metrics-max-age defaults to the relist interval.
        "extraArguments": [f"--metrics-max-age={timing.max_age}"],
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
