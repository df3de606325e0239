"""Builders from the metric catalog (`components/catalog/serving_metrics.py`): the HPA metric spec,
the PrometheusRule groups, prometheus-adapter rules and the PodMonitor. The one source of truth for
what Prometheus records, the adapter serves, the HPA reads and the dashboard plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The catalog's names are part of this module's interface: callers read the metric catalog and
# what is built from it through one module (`metrics.METRICS`, `metrics.hpa_metric_spec`).
from components.catalog.serving_metrics import *  # noqa: F403
from components.config import ModelConfig


def metric_target(metric: HpaMetric, model: ModelConfig) -> float:
    """The per-pod target for `model`: its configured one, else derived, else the default."""
    if model.autoscaling.target is not None:
        return model.autoscaling.target
    if metric.target_from_model is not None:
        return metric.target_from_model(model)
    assert metric.default_target is not None, f"{metric.name} is not an autoscaling metric"
    return metric.default_target


def _quantity(value: float) -> str:
    """A Kubernetes quantity for an HPA averageValue (milli-units keep fractions exact)."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def hpa_metric_spec(model: ModelConfig) -> dict[str, Any]:
    """The autoscaling/v2 `spec.metrics[]` entry for a model's HPA (a Pods metric)."""
    metric = hpa_metric_for(model.backend, model.autoscaling.metric)
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": metric.name},
            "target": {"type": "AverageValue", "averageValue": _quantity(metric_target(metric, model))},
        },
    }


# --------------------------------------------------------------------------- Prometheus rules


@dataclass(frozen=True)
class AdapterTiming:
    relist_interval: str  # prometheus-adapter --metrics-relist-interval
    max_age: str  # prometheus-adapter --metrics-max-age


def adapter_timing(scrape_interval: str) -> AdapterTiming:
    """prometheus-adapter's series discovery, tied to the rule evaluation interval.

    The adapter lists the series its rules match that have a sample in the last `max-age`
    (default: the relist interval). A record written every `evaluation` seconds is missed by a
    listing whose max-age is shorter than that, and the metric vanishes from the custom-metrics
    API until the next listing (the HPA reports FailedGetPodsMetric and stops scaling). max-age
    covers two evaluations plus the relist interval, so one late evaluation never drops it; the
    relist interval (how soon a new pod's series is served) is two evaluations, at least 30 s.
    """
    evaluation = duration_seconds(scrape_interval)
    relist = max(30, 2 * evaluation)
    return AdapterTiming(duration_text(relist), duration_text(relist + 2 * evaluation))


def rule_groups(scrape_interval: str = DEFAULT_SCRAPE_INTERVAL) -> list[dict[str, Any]]:
    """Recording-rule groups, as a PrometheusRule's `spec.groups` and a Prometheus rule file take them.

    Evaluated at the scrape interval, each rate/average over `window_for(scrape_interval)`.
    """
    check_scrape_interval(scrape_interval)
    window = window_for(scrape_interval)
    return [
        {
            "name": RULE_GROUP,
            "interval": scrape_interval,
            "rules": [
                {"record": m.record, "expr": m.expr_for(window), "labels": {"unit": m.unit}} for m in METRICS.values()
            ],
        }
    ]


def prometheus_rule_manifest(
    namespace: str, name: str = "tritonllm-recording-rules", scrape_interval: str = DEFAULT_SCRAPE_INTERVAL
) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "tritonllm"}},
        "spec": {"groups": rule_groups(scrape_interval)},
    }


def vllm_report_custom_metrics(model: ModelConfig) -> bool:
    """Whether a vLLM model's config turns on REPORT_CUSTOM_METRICS (`ModelConfig.reports_vllm_custom_metrics`:
    its explicit `vllm.reportCustomMetrics`, else whatever its autoscaling metric needs).

    Its explicit `vllm.reportCustomMetrics`, else whatever its autoscaling metric needs. The
    upstream warning (vllm_backend README, r25.12 and r26.01 alike: "not reported ... by default due to potential
    performance slowdowns") is about `disable_frontend_multiprocessing`, which the backend sets
    with it; see README "Autoscaling" for what that costs on the pinned vLLM.
    """
    return model.reports_vllm_custom_metrics


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


def render_metrics_query(
    template: str, series: str, namespace: str, pods: list[str], resource_label: str = "pod"
) -> str:
    """Expand a metricsQuery as prometheus-adapter does for a namespaced Pods metric.

    Mirrors pkg/naming/metrics_query.go (Build): LabelMatchers is the namespace
    matcher then the resource matcher (`pod="a"` for one name, `pod=~"a|b"` for
    several), values quoted with Go's %q; GroupBy is the resource label.
    """
    if not pods:
        raise ValueError("prometheus-adapter always queries at least one object")
    matchers = [f"namespace={_go_quote(namespace)}"]
    joined = "|".join(pods)
    matchers.append(
        f"{resource_label}={_go_quote(joined)}" if len(pods) == 1 else f"{resource_label}=~{_go_quote(joined)}"
    )
    return (
        template.replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", ",".join(matchers))
        .replace("<<.GroupBy>>", resource_label)
    )


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


def pod_monitor_manifest(
    model_name: str, namespace: str, scrape_interval: str = DEFAULT_SCRAPE_INTERVAL
) -> dict[str, Any]:
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
