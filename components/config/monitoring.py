"""`monitoring`: kube-prometheus-stack, Grafana, DCGM exporter, prometheus-adapter, the alerts and where
they go (`monitoring.alerts`), CloudWatch Container Insights (`monitoring.cloudwatch`)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from components.catalog import serving_metrics as metrics
from components.config.base import (
    DURATION,
    QUANTITY,
    ConfigModel,
)

# What SNS accepts as an e-mail endpoint, loosely: one @, a dot in the domain, no spaces.
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class ModelAlertTargets(ConfigModel):
    """Per-model latency targets (`monitoring.alerts.models.<model name>`), overriding the stack-wide ones."""

    queue_time_ms: float | None = Field(
        None, gt=0, description="Alert when Triton's queue time per request stays above this (ms)"
    )
    ttft_ms: float | None = Field(
        None, gt=0, description="Alert when vLLM's mean time to first token stays above this (ms)"
    )


class SnsAlertsConfig(ConfigModel):
    """An SNS topic the stack creates for Alertmanager to publish to, and its e-mail subscribers."""

    enabled: bool = Field(False, description="Create the topic and route every alert to it")
    emails: list[str] = Field(
        [], description="E-mail addresses subscribed to the topic (each confirms once, from the mail SNS sends)"
    )

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [e for e in value if not re.match(EMAIL, e)]
        if bad:
            raise ValueError(f"{bad} are not e-mail addresses; write them like oncall@example.com")
        if len(set(value)) != len(value):
            raise ValueError("lists an address twice; keep one of each")
        return value

    @model_validator(mode="after")
    def _emails_need_the_topic(self) -> SnsAlertsConfig:
        if self.emails and not self.enabled:
            raise ValueError("@emails: subscriptions need the topic; set monitoring.alerts.sns.enabled: true")
        return self


class AlertsConfig(ConfigModel):
    """Alert rules for LLM serving (a PrometheusRule next to the recording rules) and their delivery."""

    enabled: bool = Field(True, description="Provision the serving alert rules")
    failure_ratio: float = Field(
        0.05, gt=0, lt=1, description="Alert when failed / all inference requests of a model stays above this"
    )
    failure_for: str = Field("5m", pattern=DURATION, description="How long the failure ratio must hold")
    queue_time_ms: float = Field(
        1000,
        gt=0,
        description="Queue time per request target (ms) of TensorRT-LLM models (Triton's scheduler queue); "
        "5x the default HPA target of that metric",
    )
    ttft_ms: float = Field(
        3000,
        gt=0,
        description="Mean time to first token target (ms) of vLLM models that report it (vllm.reportCustomMetrics)",
    )
    latency_for: str = Field("10m", pattern=DURATION, description="How long a latency target must be missed")
    models: dict[str, ModelAlertTargets] = Field(
        {}, description="Per-model queueTimeMs / ttftMs, keyed by models[].name"
    )
    unavailable_for: str = Field(
        "5m", pattern=DURATION, description="How long a model may have no ready replica before it alerts"
    )
    hpa_maxed_for: str = Field(
        "15m", pattern=DURATION, description="How long an HPA may sit at maxReplicas before it alerts"
    )
    gpu_pending_for: str = Field(
        "15m",
        pattern=DURATION,
        description="How long a pod requesting GPUs may stay unscheduled (Karpenter launching a node takes minutes)",
    )
    gpu_memory_used_ratio: float = Field(
        0.97,
        gt=0.5,
        lt=1,
        description="Alert when a GPU's framebuffer used / (used + free) stays above this; must exceed every "
        "vLLM model's gpuMemoryUtilization (vLLM reserves that share by design)",
    )
    repeat_interval: str = Field(
        "12h",
        pattern=DURATION,
        description="Alertmanager repeat_interval: how often a still-firing alert is sent again",
    )
    sns: SnsAlertsConfig = Field(default_factory=SnsAlertsConfig, description="See monitoring.alerts.sns.*")


class CloudWatchConfig(ConfigModel):
    """CloudWatch Container Insights with enhanced observability (the amazon-cloudwatch-observability add-on)."""

    enabled: bool = Field(
        False, description="Install the amazon-cloudwatch-observability EKS add-on (billed per observation)"
    )
    container_logs: bool = Field(
        False, description="Also ship every container's logs to CloudWatch Logs with Fluent Bit (billed per GB)"
    )


class MonitoringConfig(ConfigModel):
    """kube-prometheus-stack, Grafana, DCGM exporter, prometheus-adapter."""

    enabled: bool = Field(True, description="Install the monitoring stack and the HPA metrics adapter")
    retention: str = Field("15d", pattern=r"^[0-9]+(h|d|w|y)$", description="Prometheus retention")
    storage_size: str = Field("50Gi", pattern=QUANTITY, description="Prometheus volume size")
    retention_size: str = Field(
        "40GB",
        pattern=r"^[0-9]+(B|KB|MB|GB|TB)$",
        description="Prometheus retentionSize: oldest blocks are deleted past it, so a full volume never stops "
        "Prometheus; keep it below storageSize",
    )
    scrape_interval: str = Field(
        "15s",
        pattern=r"^[0-9]+(s|m)$",
        description="Prometheus scrape and rule interval, 5s-60s; the autoscaling rules average over 4 intervals",
    )
    dcgm_exporter: bool = Field(True, description="Run the DCGM exporter on GPU nodes")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="See monitoring.alerts.*")
    cloudwatch: CloudWatchConfig = Field(default_factory=CloudWatchConfig, description="See monitoring.cloudwatch.*")

    @field_validator("scrape_interval")
    @classmethod
    def _scrape_interval(cls, value: str) -> str:
        metrics.check_scrape_interval(value)
        return value

    @model_validator(mode="after")
    def _retention_fits(self) -> MonitoringConfig:
        size, retention = _bytes(self.storage_size), _bytes(self.retention_size)
        if size is not None and retention is not None and retention >= size:
            raise ValueError(
                f"@retentionSize: {self.retention_size} does not fit the {self.storage_size} volume (storageSize); "
                "keep it about 20% below so the WAL and compaction have room"
            )
        return self


_BYTE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def _bytes(quantity: str) -> int | None:
    """Bytes of a size like 40GB (Prometheus) or 50Gi (Kubernetes); None if not of that form."""
    import re as _re

    found = _re.fullmatch(r"([0-9]+)([A-Za-z]*)", quantity)
    if not found or found.group(2) not in _BYTE_UNITS:
        return None
    return int(found.group(1)) * _BYTE_UNITS[found.group(2)]
