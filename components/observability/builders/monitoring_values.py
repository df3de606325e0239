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
# The Alertmanager object the chart creates (templates/_helpers.tpl kube-prometheus-stack.alertmanager.crname:
# "<fullname>-alertmanager" while cleanPrometheusOperatorObjectNames is false), its Service (port 9093) and
# the service account its pods run as (set explicitly below: its Pod Identity association names it).
ALERTMANAGER_NAME = f"{KPS_RELEASE}-alertmanager"
ALERTMANAGER_SERVICE_PORT = 9093
ALERTMANAGER_SERVICE_ACCOUNT = f"{KPS_RELEASE}-alertmanager"
# The Secret holding Alertmanager's whole configuration, written by the program
# (components/observability/builders/alertmanager.py).
ALERTMANAGER_CONFIG_SECRET = "tritonllm-alertmanager-config"
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
        # Documented, commented out ("# configSecret:"), in the chart's values.yaml and read by
        # templates/alertmanager/alertmanager.yaml (`configSecret: {{ ...configSecret }}`), chart 88.5.3.
        "alertmanager.alertmanagerSpec.configSecret",
    },
    "prometheus-adapter": set(),
    # customMetrics is documented, commented out, in the chart's values.yaml and read by
    # deployment/templates/metrics-configmap.yaml (dcgm-exporter 4.5.3-4.8.2): the CSV the exporter loads.
    "dcgm-exporter": {"affinity", "customMetrics"},
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
        "alertmanager": {
            "enabled": True,
            "serviceAccount": {"create": True, "name": ALERTMANAGER_SERVICE_ACCOUNT},
            # The configuration (receivers, routes, with the webhook URL when set) is the Secret the
            # program writes (components/observability/builders/alertmanager.py); the chart renders none.
            "alertmanagerSpec": {"useExistingSecret": True, "configSecret": ALERTMANAGER_CONFIG_SECRET},
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


# The fields of the chart's default metrics ConfigMap (dcgm-exporter 4.5.3-4.8.2
# deployment/templates/metrics-configmap.yaml) without its DCGM_FI_PROF_* (profiling, "DCP") fields:
# what our exporter collects while the CloudWatch add-on runs its own DCGM exporter on the same GPUs.
# The profiling counters are a system-wide lock in the driver that only one DCGM host engine can hold
# (NVIDIA/DCGM#56, NVIDIA/dcgm-exporter#7: "uses hardware subsystems that cannot be shared between
# multiple processes"); every other field is read through NVML, which serves both. The alerts and the
# Triton dashboard use none of the profiling fields.
DCGM_FIELDS_WITHOUT_PROFILING = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "Total number of NVLink bandwidth counters for all lanes."),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
)


def dcgm_metrics_csv(fields: tuple[tuple[str, str, str], ...] = DCGM_FIELDS_WITHOUT_PROFILING) -> str:
    """A dcgm-exporter metrics file: `DCGM field, Prometheus type, help` per line."""
    return "".join(f"{name}, {kind}, {help_text}\n" for name, kind, help_text in fields)


def dcgm_exporter_values(monitoring: MonitoringConfig) -> dict[str, Any]:
    """DCGM exporter on GPU nodes only (tolerating their taint), scraped through its ServiceMonitor.

    With CloudWatch Container Insights on, the add-on runs NVIDIA's exporter too (for its own GPU
    metrics, with profiling fields); ours then leaves the profiling fields to it
    (DCGM_FIELDS_WITHOUT_PROFILING) and keeps everything the alerts and the dashboard read.
    """
    values: dict[str, Any] = {
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
    if monitoring.cloudwatch.enabled:
        values["customMetrics"] = dcgm_metrics_csv()
    return values
