"""`monitoring.alerts` and the alert webhook against the rest of the stack, before any resource exists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from components.config.models import ModelConfig
from components.config.monitoring import MonitoringConfig

WEBHOOK_SECRET = "alertWebhookUrl"


def latency_signal(model: ModelConfig) -> str | None:
    """Which latency a model's alert watches: "ttft" (vLLM with its custom metrics), "queue" (TensorRT-LLM:
    Triton's scheduler queue), or None (vLLM without custom metrics: Triton's own durations there measure
    only the hand-off to the vLLM engine; components/catalog/serving_metrics.py)."""
    if model.backend == "vllm":
        return "ttft" if model.reports_vllm_custom_metrics else None
    return "queue"


def alert_problems(monitoring: MonitoringConfig, models: Sequence[ModelConfig], webhook_set: bool) -> list[str]:
    """One "@key: message and fix" line per problem with monitoring.alerts (or the alert webhook)."""
    alerts = monitoring.alerts
    problems: list[str] = []
    by_name = {m.name: m for m in models}
    for name, targets in alerts.models.items():
        key = f"@monitoring.alerts.models.{name}"
        model = by_name.get(name)
        if model is None:
            problems.append(f"{key}: {name!r} is not a models[] entry; use one of {sorted(by_name)}")
            continue
        signal = latency_signal(model)
        if targets.ttft_ms is not None and signal != "ttft":
            problems.append(
                f"{key}.ttftMs: {name} does not report time to first token (only vLLM models with "
                "vllm.reportCustomMetrics do); "
                + ("use queueTimeMs" if signal == "queue" else "set vllm.reportCustomMetrics: true")
            )
        if targets.queue_time_ms is not None and signal != "queue":
            problems.append(
                f"{key}.queueTimeMs: on the vLLM backend Triton's queue time measures only the hand-off to "
                "vLLM, so no alert uses it; "
                + ("use ttftMs" if signal == "ttft" else "set vllm.reportCustomMetrics: true and use ttftMs")
            )
    reserved = {m.name: m.vllm.gpu_memory_utilization for m in models if m.backend == "vllm"}
    above = {name: share for name, share in reserved.items() if share >= alerts.gpu_memory_used_ratio}
    if monitoring.dcgm_exporter and alerts.enabled and above:
        problems.append(
            f"@monitoring.alerts.gpuMemoryUsedRatio: {alerts.gpu_memory_used_ratio} is not above the GPU memory "
            f"share vLLM reserves by design ({above}, vllm.gpuMemoryUtilization), so the alert would fire "
            f"whenever those models run; raise it above {max(above.values())} (e.g. "
            f"{min(0.99, round(max(above.values()) + 0.05, 2))})"
        )
    if not monitoring.enabled and (alerts.sns.enabled or webhook_set):
        key = "@monitoring.alerts.sns.enabled" if alerts.sns.enabled else f"@{WEBHOOK_SECRET}"
        problems.append(
            f"{key}: a receiver for alerts, but monitoring.enabled is false (no Prometheus, no Alertmanager); "
            "set monitoring.enabled: true or drop the receiver"
        )
    return problems


def check_webhook_url(value: Any) -> list[tuple[str, str]]:
    """The alertWebhookUrl secret, when the caller has its value: an http(s) URL with a host.

    The message never repeats the value (it is a secret: webhook URLs often carry a token).
    """
    if value in (None, ""):
        return []
    fix = f"run `pulumi config set --secret tritonllm:{WEBHOOK_SECRET} https://...` with the receiver's URL"
    if not isinstance(value, str):
        return [(WEBHOOK_SECRET, f"must be a URL string; {fix}")]
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value.strip()):
        return [(WEBHOOK_SECRET, f"is not an http(s) URL with a host; {fix}")]
    return []
