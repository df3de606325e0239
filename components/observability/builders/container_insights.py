"""CloudWatch Container Insights with enhanced observability: the `amazon-cloudwatch-observability`
EKS add-on (`monitoring.cloudwatch`), its configuration and its agent's role.

What the add-on installs (aws-observability/helm-charts, chart amazon-cloudwatch-observability 4.10.3, the
release the add-on version pinned in components/catalog/versions.py packages): the CloudWatch agent as a
DaemonSet (namespace amazon-cloudwatch, service account cloudwatch-agent), NVIDIA's DCGM exporter on
NVIDIA GPU instance types (its own metrics list, including the profiling field
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, served over TLS to the agent only: templates/linux/dcgm-exporter-daemonset.yaml),
the Neuron monitor, and Fluent Bit for container logs. Every DaemonSet tolerates every taint
(values.yaml `tolerations: [{operator: Exists}]`), so the agent and its DCGM exporter reach our
tainted GPU nodes.

Two DCGM exporters on one GPU: the add-on's feeds Container Insights (its GPU metrics), ours feeds
Prometheus (the XID and memory alerts, the Triton dashboard, which the add-on's exporter cannot serve:
it has no XID field and answers only TLS clients holding the agent's certificate). They would fight over
the driver's profiling counters only, which one DCGM host engine at a time can hold; ours drops its
profiling fields while the add-on runs (monitoring_values.DCGM_FIELDS_WITHOUT_PROFILING).
"""

from __future__ import annotations

from typing import Any

from components.config import MonitoringConfig

ADDON_NAME = "amazon-cloudwatch-observability"
NAMESPACE = "amazon-cloudwatch"
AGENT_SERVICE_ACCOUNT = "cloudwatch-agent"
# AWS managed policy the CloudWatch docs give the agent's role ("Install the CloudWatch agent with the
# Amazon CloudWatch Observability EKS add-on", Pod Identity option).
AGENT_POLICY = "CloudWatchAgentServerPolicy"


def addon_configuration(monitoring: MonitoringConfig) -> dict[str, Any]:
    """The add-on's configuration values (aws eks create-addon --configuration-values).

    `agent.config` replaces the agent's default configuration (chart values.yaml `agent.config`: "optional
    config that can be provided to override the defaultConfig"): Container Insights with enhanced
    observability and its accelerated-compute (NVIDIA GPU) metrics, without the default's Application
    Signals (nothing here is instrumented for it). `containerLogs.enabled` switches Fluent Bit.
    """
    return {
        "agent": {
            "config": {
                "logs": {
                    "metrics_collected": {
                        "kubernetes": {"enhanced_container_insights": True, "accelerated_compute_metrics": True}
                    }
                }
            }
        },
        "containerLogs": {"enabled": monitoring.cloudwatch.container_logs},
    }
