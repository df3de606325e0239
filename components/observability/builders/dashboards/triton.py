"""The Triton Grafana dashboard, generated from the metrics catalog.

Per-pod panels plot the recording rules of `components/catalog/serving_metrics.py` (so the
dashboard shows exactly what the HPA reads); latency histograms, GPU (DCGM) and
replica (kube-state-metrics) panels query their source series. The Grafana
sidecar of kube-prometheus-stack provisions it from a labelled ConfigMap.

`Target.source` says which exporter a query needs, so tests can tell a query
that must return data against the local Triton from one that may be empty there
(GPU, Kubernetes, vLLM or TensorRT-LLM series).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from components.observability.builders import metrics

UID = "tritonllm-triton"
TITLE = "Triton LLM serving"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SIDECAR_LABEL = "grafana_dashboard"  # kube-prometheus-stack grafana.sidecar.dashboards.label
SIDECAR_LABEL_VALUE = "1"

NS = 'namespace=~"$namespace"'
# Template variables Grafana replaces before querying; tests substitute the same.
VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*"}

# triton: Triton core metrics, always there; triton_histogram: Triton's latency histograms
# (tritonserver --metrics-config histogram_latencies=true); local: the local CPU model's own.
SOURCES = ("triton", "triton_histogram", "local", "vllm", "trtllm", "dcgm", "ksm")


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str
    source: str  # one of SOURCES


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    width: int = 12


def _record(name: str, legend: str = "{{namespace}}/{{pod}}") -> Target:
    metric = metrics.METRICS[name]
    source = "triton" if "python" in metric.reported_by else metric.reported_by[0]
    return Target(f"{metric.record}{{{NS}}}", legend, source)


def _quantiles(histogram: str, source: str, scale: str = "", label: str = "") -> tuple[Target, ...]:
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by (namespace, le) (rate({histogram}_bucket{{{NS}}}[$__rate_interval])))"
            f"{scale}",
            f"{label}p{int(q * 100)} {{{{namespace}}}}",
            source,
        )
        for q in (0.5, 0.9)
    )


def panels() -> list[Panel]:
    hpa = [metrics.METRICS[n] for n in dict.fromkeys(metrics.DEFAULT_HPA_METRIC.values())]
    return [
        Panel(
            "Requests per second",
            "reqps",
            (
                Target(
                    f"sum by (namespace) ({metrics.METRICS['triton_request_rate'].record}{{{NS}}})",
                    "success {{namespace}}",
                    "triton",
                ),
                Target(
                    f"sum by (namespace) ({metrics.METRICS['triton_failure_rate'].record}{{{NS}}})",
                    "failure {{namespace}}",
                    "triton",
                ),
            ),
            "Successful and failed requests per model (sum of its pods).",
        ),
        Panel("Requests per second per pod", "reqps", (_record("triton_request_rate"),)),
        Panel(
            "Queue time per request",
            "ms",
            (_record("triton_queue_time_per_request_ms"),),
            "Time in Triton's scheduler queue per request. Near zero for the vLLM and TensorRT-LLM "
            "backends, which take requests at once and queue inside the engine.",
        ),
        Panel(
            "Compute time per request",
            "ms",
            (_record("triton_compute_time_per_request_ms"),),
            "Backend execution time per request (TensorRT-LLM: the whole generation; vLLM backend: the hand-off only).",
        ),
        Panel(
            "Queue / compute ratio and pending requests",
            "short",
            (
                _record("triton_queue_compute_ratio", "ratio {{namespace}}/{{pod}}"),
                _record("triton_pending_requests", "pending {{namespace}}/{{pod}}"),
            ),
        ),
        Panel(
            "Time to first token",
            "s",
            (
                *_quantiles("vllm:time_to_first_token_seconds", "vllm", label="vLLM "),
                *_quantiles("tritonllm_time_to_first_token_seconds", "local", label="local "),
                *_quantiles(
                    "nv_inference_first_response_histogram_ms",
                    "triton_histogram",
                    scale=" / 1000",
                    label="first response ",
                ),
            ),
            "Where the backend reports it: vLLM's histogram, the local model's, and Triton's first-response "
            "histogram (tritonserver --metrics-config histogram_latencies=true).",
        ),
        Panel(
            "Requests in flight per pod (default HPA metrics)",
            "short",
            tuple(_record(m.name, f"{m.name} {{{{namespace}}}}/{{{{pod}}}}") for m in hpa),
            "The default autoscaling signal per backend, sampled while requests run: TensorRT-LLM's active "
            "requests gauge, vLLM's requests in flight from its time-to-first-token and inter-token sums "
            "(Little's law), Triton's request durations for the local Python model.",
        ),
        Panel(
            "TensorRT-LLM batch",
            "short",
            (
                _record("trtllm_active_requests", "active {{namespace}}/{{pod}}"),
                _record("trtllm_waiting_requests", "waiting {{namespace}}/{{pod}}"),
                _record("trtllm_kv_cache_utilization", "KV cache used (fraction) {{namespace}}/{{pod}}"),
            ),
        ),
        Panel(
            "GPU utilization",
            "percent",
            (Target(f"avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{{{NS}}})", "{{namespace}}/{{pod}}", "dcgm"),),
            "DCGM exporter, attributed to the pod that holds the GPU.",
        ),
        Panel(
            "GPU memory used",
            "decmbytes",
            (
                Target(f"sum by (namespace, pod) (DCGM_FI_DEV_FB_USED{{{NS}}})", "used {{namespace}}/{{pod}}", "dcgm"),
                Target(
                    f"sum by (namespace, pod) (DCGM_FI_DEV_FB_USED{{{NS}}} + DCGM_FI_DEV_FB_FREE{{{NS}}})",
                    "total {{namespace}}/{{pod}}",
                    "dcgm",
                ),
            ),
        ),
        Panel(
            "Replicas",
            "short",
            (
                Target(f"kube_horizontalpodautoscaler_status_current_replicas{{{NS}}}", "current {{namespace}}", "ksm"),
                Target(f"kube_horizontalpodautoscaler_status_desired_replicas{{{NS}}}", "desired {{namespace}}", "ksm"),
                Target(f"kube_horizontalpodautoscaler_spec_max_replicas{{{NS}}}", "max {{namespace}}", "ksm"),
            ),
        ),
        Panel(
            "HPA metric vs target",
            "short",
            (
                Target(
                    f"kube_horizontalpodautoscaler_status_target_metric{{{NS}}}", "{{metric_name}} {{namespace}}", "ksm"
                ),
                Target(
                    f"kube_horizontalpodautoscaler_spec_target_metric{{{NS}}}",
                    "target {{metric_name}} {{namespace}}",
                    "ksm",
                ),
            ),
            "The per-pod average the HPA computed from prometheus-adapter, against its target.",
        ),
    ]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON model."""
    grid_panels = []
    x = y = 0
    for panel_id, panel in enumerate(panels(), start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        grid_panels.append(
            {
                "id": panel_id,
                "type": "timeseries",
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
                "targets": [
                    {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend}
                    for i, t in enumerate(panel.targets)
                ],
            }
        )
        x += panel.width
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["tritonllm", "triton", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "namespace",
                    "label": "Model (namespace)",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(nv_inference_request_success, namespace)", "refId": "namespaces"},
                    "definition": "label_values(nv_inference_request_success, namespace)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {},
                    "hide": 0,
                },
            ]
        },
        "panels": grid_panels,
    }


def config_map_manifest(namespace: str, name: str = "tritonllm-triton-dashboard") -> dict[str, Any]:
    """The dashboard as a ConfigMap the Grafana sidecar picks up (label grafana_dashboard=1)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SIDECAR_LABEL: SIDECAR_LABEL_VALUE, "app.kubernetes.io/part-of": "tritonllm"},
        },
        "data": {"tritonllm-triton.json": json.dumps(dashboard(), indent=1, sort_keys=True)},
    }


def expand(expr: str, variables: dict[str, str] | None = None) -> str:
    """A query as Grafana sends it: template variables ($namespace, $__rate_interval) replaced."""
    variables = {**VARIABLES, **(variables or {})}
    pattern = re.compile("|".join(re.escape(k) for k in sorted(variables, key=len, reverse=True)))
    return pattern.sub(lambda m: variables[m.group(0)], expr)


def panel_queries(model: dict[str, Any], variables: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of a dashboard JSON model, template variables replaced."""
    return [
        (panel["title"], expand(target["expr"], variables)) for panel in model["panels"] for target in panel["targets"]
    ]
