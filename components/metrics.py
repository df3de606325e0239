"""The one source of truth for Triton serving metrics and autoscaling.

Every per-pod metric is defined once in `METRICS`: its PromQL (evaluated as a
recording rule), its unit, which backends report its source series and on
which backends it is a valid autoscaling signal. From that catalog this module
builds the PrometheusRule groups, the prometheus-adapter `rules.custom` entries,
the PodMonitor the Triton pods are scraped through and the HPA metric spec; the
Grafana dashboard (`components/dashboards/triton.py`) plots the same records.
Config validation (`hpa_metric_for`) reads it too, so a metric name cannot
drift between the HPA, the adapter and the rule that computes it.

What the backends really report (Triton 25.12):

* Triton core counters (`nv_inference_*`) are updated when the backend reports
  a request's statistics. Triton's vLLM backend is a decoupled Python model
  whose `execute()` hands each request to the vLLM engine and returns at once,
  so its queue, compute and request durations measure only that hand-off:
  vLLM's own waiting queue is invisible to them, and
  `nv_inference_request_success` counts requests when they are handed over
  (arrivals), not when they finish. The TensorRT-LLM backend enqueues into its
  executor and reports statistics at the final response: Triton's queue time
  stays near zero, while compute and request durations cover the whole
  generation (executor queue included).
* vLLM backend custom metrics (`vllm:*`, only with the model config parameter
  `REPORT_CUSTOM_METRICS: "true"` and `disable_log_stats: false` in model.json):
  prompt/generation token counters and the histograms time_to_first_token,
  time_per_output_token, e2e_request_latency, request_prompt_tokens,
  request_generation_tokens, request_params_n. There is no
  num_requests_running/waiting gauge in Triton's vLLM backend.
* TensorRT-LLM backend custom metrics (label `model="tensorrt_llm"`, the
  ensemble's engine model): `nv_trt_llm_request_metrics{request_type=
  "active"|"max"|"scheduled"|"context"|"waiting"}` where waiting = active -
  scheduled, `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=
  "max"|"free"|"used"|"tokens_per"|"reused"|"fraction"}`.
* The local CPU model (`model_repository/local`, Python backend) generates
  inside `execute()`, one request at a time: there Triton's queue and request
  durations are the real queueing and end-to-end latency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # config imports this module; avoid the cycle at run time
    from components.config import ModelConfig

# Backends a metric can come from. "python" is a Python-backend model that runs
# inference inside execute() (the local CPU model); stack configs use vllm/trtllm.
BACKENDS = ("vllm", "trtllm", "python")

# Window of every rate()/avg_over_time() in the rules. Four scrapes at the default
# 15 s interval; Prometheus needs at least two samples in the window.
WINDOW = "1m"

# Labels a per-pod record keeps; prometheus-adapter maps them to Kubernetes objects.
POD_LABELS = ("namespace", "pod")
_BY_POD = "namespace, pod"
_BY_MODEL = "namespace, pod, model"

RULE_GROUP = "tritonllm.pod.rules"
RECORD_PREFIX = "namespace_pod"

# Triton pod conventions shared with components/triton.py.
TRITON_APP_LABEL = "triton"
MODEL_LABEL_KEY = "tritonllm.io/model"
METRICS_PORT_NAME = "metrics"
METRICS_PORT = 8002


@dataclass(frozen=True)
class HpaMetric:
    """A per-pod metric: recorded by Prometheus, served by prometheus-adapter.

    `backends` lists the backends on which it is a meaningful autoscaling signal
    (empty: dashboard only); `reported_by` the backends that export its source
    series at all.
    """

    name: str  # custom-metrics API name (the HPA's `pods.metric.name`)
    unit: str
    expr: str  # PromQL giving one series per (namespace, pod)
    description: str
    reported_by: tuple[str, ...]
    backends: tuple[str, ...] = ()
    default_target: float | None = None
    # Target derived from the model's config where the capacity is known from it.
    target_from_model: Callable[["ModelConfig"], float] | None = field(default=None, compare=False)

    @property
    def record(self) -> str:
        """Name of the recording rule's series (`level:metric:operation` convention)."""
        return f"{RECORD_PREFIX}:{self.name}:{WINDOW}"

    @property
    def autoscaling(self) -> bool:
        return bool(self.backends)

    def target_for(self, model: "ModelConfig") -> float:
        """The per-pod target for `model`: its configured one, else derived, else the default."""
        if model.autoscaling.target is not None:
            return model.autoscaling.target
        if self.target_from_model is not None:
            return self.target_from_model(model)
        assert self.default_target is not None, f"{self.name} is not an autoscaling metric"
        return self.default_target


def _rate(series: str) -> str:
    return f"rate({series}[{WINDOW}])"


def _per_model(expr: str) -> str:
    return f"sum by ({_BY_MODEL}) ({expr})"


def _max_over_models(expr: str) -> str:
    # One Triton pod serves one model, or an ensemble whose requests pass through
    # every composing model once: the busiest model stands for the pod (never a sum,
    # which would count an ensemble request once per composing model).
    return f"max by ({_BY_POD}) ({expr})"


def _ratio(numerator: str, denominator: str, by: str = _BY_MODEL, scale: str = "") -> str:
    """numerator/denominator per pod; 0 (not NaN, not absent) while the denominator is 0.

    The HPA must read an idle pod as unloaded: a missing or NaN value would stop it scaling down.
    """
    num, den = f"sum by ({by}) ({_rate(numerator)})", f"sum by ({by}) ({_rate(denominator)})"
    value, idle = f"{num} / ({den} > 0){scale}", f"{den} * 0"
    if by == _BY_MODEL:
        value, idle = _max_over_models(value), _max_over_models(idle)
    return f"{value} or {idle}"


METRICS: dict[str, HpaMetric] = {
    m.name: m
    for m in [
        HpaMetric(
            "triton_requests_in_flight", "requests",
            _max_over_models(f"{_per_model(_rate('nv_inference_request_duration_us'))} / 1e6"),
            "mean number of requests inside Triton per pod (Little's law: request-seconds completed per "
            "second); covers the whole generation where the backend reports at completion (TensorRT-LLM, "
            "Python models that generate in execute()), only the hand-off for the vLLM backend",
            reported_by=BACKENDS, backends=("trtllm", "python"), default_target=2.0,
            # Half the engine's in-flight batch: headroom for the minutes a new GPU node takes.
            target_from_model=lambda m: m.engine.max_batch_size / 2,
        ),
        HpaMetric(
            "vllm_requests_in_flight", "requests",
            f"sum by ({_BY_POD}) ({_rate('vllm:e2e_request_latency_seconds_sum')})",
            "mean number of requests inside vLLM per pod (Little's law over vLLM's end-to-end latency "
            "histogram: running and waiting requests alike)",
            reported_by=("vllm",), backends=("vllm",), default_target=8.0,
        ),
        HpaMetric(
            "vllm_time_to_first_token_ms", "ms",
            _ratio("vllm:time_to_first_token_seconds_sum", "vllm:time_to_first_token_seconds_count",
                   by=_BY_POD, scale=" * 1000"),
            "mean time to first token per request (vLLM queueing + prefill), milliseconds",
            reported_by=("vllm",), backends=("vllm",), default_target=1000.0,
        ),
        HpaMetric(
            "trtllm_waiting_requests", "requests",
            f"sum by ({_BY_POD}) (avg_over_time(nv_trt_llm_request_metrics{{request_type=\"waiting\"}}[{WINDOW}]))",
            "requests active in the TensorRT-LLM executor but not scheduled in the current batch "
            "(waiting for KV cache or a batch slot), averaged over the window",
            reported_by=("trtllm",), backends=("trtllm",), default_target=4.0,
        ),
        HpaMetric(
            "trtllm_active_requests", "requests",
            f"sum by ({_BY_POD}) (avg_over_time(nv_trt_llm_request_metrics{{request_type=\"active\"}}[{WINDOW}]))",
            "requests in the TensorRT-LLM executor (scheduled + waiting), capped at the engine's max batch",
            reported_by=("trtllm",),
        ),
        HpaMetric(
            "trtllm_kv_cache_utilization", "ratio",
            f"max by ({_BY_POD}) (avg_over_time(nv_trt_llm_kv_cache_block_metrics{{kv_cache_block_type=\"fraction\"}}[{WINDOW}]))",
            "fraction of the TensorRT-LLM KV cache blocks in use",
            reported_by=("trtllm",),
        ),
        HpaMetric(
            "triton_request_rate", "requests/s",
            _max_over_models(_per_model(_rate("nv_inference_request_success"))),
            "successful inference requests per second per pod (for the vLLM backend: requests handed to vLLM)",
            reported_by=BACKENDS, backends=BACKENDS, default_target=5.0,
        ),
        HpaMetric(
            "triton_failure_rate", "requests/s",
            _max_over_models(_per_model(_rate("nv_inference_request_failure"))),
            "failed inference requests per second per pod",
            reported_by=BACKENDS,
        ),
        HpaMetric(
            "triton_queue_time_per_request_ms", "ms",
            _ratio("nv_inference_queue_duration_us", "nv_inference_request_success", scale=" / 1000"),
            "average time a request waited in Triton's scheduler queue, per request, milliseconds",
            reported_by=BACKENDS, backends=("python",), default_target=200.0,
        ),
        HpaMetric(
            "triton_compute_time_per_request_ms", "ms",
            _ratio("nv_inference_compute_infer_duration_us", "nv_inference_request_success", scale=" / 1000"),
            "average time the backend spent executing a request, per request, milliseconds",
            reported_by=BACKENDS,
        ),
        HpaMetric(
            "triton_queue_compute_ratio", "ratio",
            _ratio("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"),
            "time in Triton's queue over time in the backend (about the requests waiting per request "
            "executing, for a model that runs one request at a time)",
            reported_by=BACKENDS, backends=("python",), default_target=1.0,
        ),
        HpaMetric(
            "triton_pending_requests", "requests",
            f"sum by ({_BY_POD}) (avg_over_time(nv_inference_pending_request_count[{WINDOW}]))",
            "requests waiting in Triton's scheduler for an execute() call, averaged over the window",
            reported_by=BACKENDS,
        ),
    ]
}

# Kept for callers of the first catalog: the metrics an HPA may use.
HPA_METRICS: dict[str, HpaMetric] = {n: m for n, m in METRICS.items() if m.autoscaling}

DEFAULT_HPA_METRIC = {
    "vllm": "vllm_requests_in_flight",
    "trtllm": "triton_requests_in_flight",
    "python": "triton_requests_in_flight",
}


def hpa_metric_for(backend: str, metric: str | None) -> HpaMetric:
    """The metric a model autoscales on: its configured one, else its backend's default."""
    name = metric or DEFAULT_HPA_METRIC[backend]
    found = METRICS.get(name)
    if found is None or not found.autoscaling:
        raise ValueError(f"unknown autoscaling metric {name!r}; use one of {sorted(HPA_METRICS)}")
    if backend not in found.backends:
        why = (
            f"the {backend} backend does not report it"
            if backend not in found.reported_by
            else f"on the {backend} backend it does not follow load (see components/metrics.py)"
        )
        raise ValueError(
            f"metric {name!r} cannot scale a {backend} model: {why}; use one of "
            f"{sorted(n for n, m in HPA_METRICS.items() if backend in m.backends)}"
        )
    return found


def _quantity(value: float) -> str:
    """A Kubernetes quantity for an HPA averageValue (milli-units keep fractions exact)."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def hpa_metric_spec(model: "ModelConfig") -> dict[str, Any]:
    """The autoscaling/v2 `spec.metrics[]` entry for a model's HPA (a Pods metric)."""
    metric = hpa_metric_for(model.backend, model.autoscaling.metric)
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": metric.name},
            "target": {"type": "AverageValue", "averageValue": _quantity(metric.target_for(model))},
        },
    }


# --------------------------------------------------------------------------- Prometheus rules


def rule_groups(interval: str | None = None) -> list[dict[str, Any]]:
    """Recording-rule groups, as a PrometheusRule's `spec.groups` and a Prometheus rule file take them."""
    group: dict[str, Any] = {
        "name": RULE_GROUP,
        "rules": [
            {"record": m.record, "expr": m.expr, "labels": {"unit": m.unit}} for m in METRICS.values()
        ],
    }
    if interval:
        group["interval"] = interval
    return [group]


def prometheus_rule_manifest(namespace: str, name: str = "tritonllm-recording-rules",
                             interval: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "tritonllm"}},
        "spec": {"groups": rule_groups(interval)},
    }


# --------------------------------------------------------------------------- prometheus-adapter

# prometheus-adapter substitutes <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>>
# (Go template, `<<`/`>>` delimiters). The record already has one series per pod;
# max() only folds duplicates while Prometheus replaces a series (pod restart).
ADAPTER_METRICS_QUERY = "max by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})"


def adapter_rules() -> list[dict[str, Any]]:
    """prometheus-adapter `rules.custom`: one per autoscaling metric, pods and namespaces as resources."""
    return [
        {
            "seriesQuery": f'{m.record}{{namespace!="",pod!=""}}',
            "resources": {"overrides": {label: {"resource": label} for label in POD_LABELS}},
            "name": {"matches": f"^{m.record}$", "as": m.name},
            "metricsQuery": ADAPTER_METRICS_QUERY,
        }
        for m in HPA_METRICS.values()
    ]


# The seeds' rule, kept for comparison (benchmark, rule tests): milliseconds of
# queueing per second of wall time, averaged over the pod's models.
SEED_METRIC_NAME = "nv_inference_queue_duration_ms"
SEED_METRICS_QUERY = "avg(rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])/1000) by (<<.GroupBy>>)"
SEED_TARGET = 10.0  # the seeds' HPA averageValue


def render_metrics_query(template: str, series: str, namespace: str, pods: list[str],
                         resource_label: str = "pod") -> str:
    """Expand a metricsQuery as prometheus-adapter does for a namespaced Pods metric.

    Mirrors pkg/naming/metrics_query.go (Build): LabelMatchers is the namespace
    matcher then the resource matcher (`pod="a"` for one name, `pod=~"a|b"` for
    several), values quoted with Go's %q; GroupBy is the resource label.
    """
    if not pods:
        raise ValueError("prometheus-adapter always queries at least one object")
    matchers = [f"namespace={_go_quote(namespace)}"]
    joined = "|".join(pods)
    matchers.append(f"{resource_label}={_go_quote(joined)}" if len(pods) == 1
                    else f"{resource_label}=~{_go_quote(joined)}")
    return (template.replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", ",".join(matchers))
            .replace("<<.GroupBy>>", resource_label))


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- PodMonitor


def pod_selector_labels(model_name: str) -> dict[str, str]:
    """Labels every Triton pod of `model_name` carries (and its PodMonitor selects on)."""
    return {
        "app.kubernetes.io/name": TRITON_APP_LABEL,
        "app.kubernetes.io/instance": model_name,
        MODEL_LABEL_KEY: model_name,
    }


def pod_monitor_manifest(model_name: str, namespace: str, scrape_interval: str = "15s") -> dict[str, Any]:
    """PodMonitor scraping Triton's metrics port of one model's pods.

    Prometheus (kube-prometheus-stack) labels each series with the pod's
    `namespace` and `pod`, which the recording rules group by.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": f"{model_name}-triton",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tritonllm", MODEL_LABEL_KEY: model_name},
        },
        "spec": {
            "selector": {"matchLabels": pod_selector_labels(model_name)},
            "namespaceSelector": {"matchNames": [namespace]},
            "podMetricsEndpoints": [
                {
                    "port": METRICS_PORT_NAME,
                    "path": "/metrics",
                    "interval": scrape_interval,
                }
            ],
        },
    }
