"""The one source of truth for Triton autoscaling metrics.

Each HPA metric is defined once here: its recording rule (PromQL), the
prometheus-adapter rule that exposes it per pod, its unit and which backends
report it. Config validation, the HPA, the adapter, the PrometheusRule and the
dashboard all read from this module, so the names cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HpaMetric:
    name: str  # the custom-metrics API name the HPA asks for (pods metric)
    unit: str
    backends: tuple[str, ...]
    default_target: float
    description: str


HPA_METRICS: dict[str, HpaMetric] = {
    m.name: m
    for m in [
        HpaMetric(
            "triton_queue_time_per_request_ms", "ms", ("vllm", "trtllm"), 50.0,
            "average time a request waited in Triton's queue, per request",
        ),
        HpaMetric(
            "triton_queue_compute_ratio", "ratio", ("vllm", "trtllm"), 0.5,
            "queue time over compute time per request",
        ),
        HpaMetric(
            "triton_request_rate", "requests/s", ("vllm", "trtllm"), 5.0,
            "successful inference requests per second per pod",
        ),
        HpaMetric(
            "trtllm_waiting_requests", "requests", ("trtllm",), 4.0,
            "requests waiting in TensorRT-LLM's in-flight batcher",
        ),
    ]
}

DEFAULT_HPA_METRIC = {"vllm": "triton_request_rate", "trtllm": "trtllm_waiting_requests"}


def hpa_metric_for(backend: str, metric: str | None) -> HpaMetric:
    """The metric a model autoscales on: its configured one, else its backend's default."""
    name = metric or DEFAULT_HPA_METRIC[backend]
    if name not in HPA_METRICS:
        raise ValueError(f"unknown autoscaling metric {name!r}; use one of {sorted(HPA_METRICS)}")
    found = HPA_METRICS[name]
    if backend not in found.backends:
        raise ValueError(f"metric {name!r} is not reported by the {backend} backend; use one of "
                         f"{sorted(n for n, m in HPA_METRICS.items() if backend in m.backends)}")
    return found
