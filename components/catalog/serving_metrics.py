"""What Triton and its backends report, and which series can drive an HPA: the metric catalog.

Every per-pod metric is defined once in `METRICS`: its PromQL (evaluated as a
recording rule), its unit, which backends report its source series and on
which backends it is a valid autoscaling signal. From that catalog
`components/observability/builders/metrics.py` builds the PrometheusRule groups, the
prometheus-adapter `rules.custom` entries, the PodMonitor the Triton pods are scraped through
and the HPA metric spec; the Grafana dashboard (`components/observability/builders/dashboards/`)
plots the same records. Config validation (`hpa_metric_for`) reads it too, so a metric name
cannot drift between the HPA, the adapter and the rule that computes it.

What the backends really report, read at the pinned sources of each runtime's image
(`VLLM_METRICS_READ_AT`, `TRTLLM_METRICS_READ_AT`; components/catalog/versions.py):

* Triton core counters (`nv_inference_*`) are updated when the backend reports
  a request's statistics. The Python backend reports them when `execute()`
  returns (python_backend `src/python_be.cc`, PbMetricReporter, r25.12 to r26.02), and
  Triton's vLLM backend is a decoupled Python model whose `execute()` hands each
  request to the vLLM engine and returns at once: its queue, compute and request
  durations measure only that hand-off, and `nv_inference_request_success`
  counts requests when they are handed over (arrivals). The TensorRT-LLM backend
  reports statistics at the final response: its durations cover the whole
  generation and move only when requests finish.
* A decoupled composing model creates one request for the next step per
  response (server r25.12 `docs/user_guide/ensemble_models.md`): in a streaming
  TensorRT-LLM ensemble `postprocessing` runs once per token. Request counts are
  therefore read at the served model (the ensemble) only, never at a composing
  model (`COMPOSING_MODELS`).
* vLLM backend custom metrics (vllm_backend `src/utils/metrics.py`, r26.01 as r25.12), only
  with the model parameter `REPORT_CUSTOM_METRICS: "true"` and
  `disable_log_stats: false`: counters `vllm:prompt_tokens_total`,
  `vllm:generation_tokens_total` and histograms time_to_first_token,
  time_per_output_token, e2e_request_latency, request_prompt_tokens,
  request_generation_tokens, request_params_n. The stat logger ignores
  vLLM's SchedulerStats: there is NO num_requests_running/waiting or
  gpu_cache_usage gauge. What is observed while requests run: time to first
  token (at the first token, vLLM 0.13.0 `vllm/v1/metrics/stats.py`
  update_from_output) and the inter-token latency, one observation per decode
  step of each running request. Their sums tile each request's life from arrival
  to its last token, so rate(ttft_sum) + rate(tpot_sum) is the mean number of
  requests in vLLM (Little's law) with the decode part attributed every step,
  not at completion like e2e_request_latency.
* TensorRT-LLM backend custom metrics, gauges set from the executor's iteration
  statistics while requests run (label `model="tensorrt_llm"`; TensorRT-LLM
  `triton_backend/inflight_batcher_llm/src/custom_metrics_reporter/
  custom_metrics_reporter.cc`): `nv_trt_llm_request_metrics{request_type=
  "active"|"max"|"scheduled"|"context"|"waiting"}`,
  `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=
  "max"|"free"|"used"|"tokens_per"|"reused"|"fraction"}`.
* The local CPU model (`model_repository/local`, Python backend) generates
  inside `execute()`, one request at a time: there Triton's queue and request
  durations are the real queueing and end-to-end latency.

Rule window and timing: every rate()/avg_over_time() window is
`WINDOW_SCRAPES` scrape intervals (`window_for`), rules are evaluated at the
scrape interval, and prometheus-adapter's relist interval and metrics-max-age
follow (`adapter_timing`); `check_scrape_interval` refuses intervals that
cannot give the HPA a steady metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The releases whose backend sources the catalog above was read at: the vLLM image's
# vllm_backend (src/utils/metrics.py: the vllm:* names, with vLLM's IterationStats fields) and the
# engine image's TensorRT-LLM backend (nv_trt_llm_* gauges). tests/unit/test_versions.py holds
# them equal to the pins, so moving an image means reading its metrics again.
VLLM_METRICS_READ_AT = "26.01"
TRTLLM_METRICS_READ_AT = "25.12"

# Backends a metric can come from. "python" is a Python-backend model that runs
# inference inside execute() (the local CPU model); stack configs use vllm/trtllm.
BACKENDS = ("vllm", "trtllm", "python")

# Window of every rate()/avg_over_time() in the rules, in scrape intervals: rate() needs
# two samples in the window, four keep it defined across one missed scrape.
WINDOW_SCRAPES = 4
DEFAULT_SCRAPE_INTERVAL = "15s"
# Placeholder for the window in the catalog's expressions (filled by `expr_for`).
_W = "$window"
# Scrape intervals that give the HPA a steady metric (see check_scrape_interval).
MIN_SCRAPE_SECONDS, MAX_SCRAPE_SECONDS = 5, 60
# The HPA controller's sync period (kube-controller-manager --horizontal-pod-autoscaler-sync-period).
HPA_SYNC_SECONDS = 15

# Composing models of the TensorRT-LLM ensemble (model_repository/trtllm/build_engine.py
# TEMPLATE_MODELS without the ensemble, which is served under the stack's model name) and the
# BLS variant. Requests are counted at the served model only.
COMPOSING_MODELS = ("preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
_SERVED = 'model!~"' + "|".join(COMPOSING_MODELS) + '"'

# Labels a per-pod record keeps; prometheus-adapter maps them to Kubernetes objects.
POD_LABELS = ("namespace", "pod")
_BY_POD = "namespace, pod"
_BY_MODEL = "namespace, pod, model"

RULE_GROUP = "tritonllm.pod.rules"
RECORD_PREFIX = "namespace_pod"

# Triton pod conventions shared with components/serving/resources/triton.py.
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
    target_from_model: Callable[[Any], float] | None = field(default=None, compare=False)
    # Source series exist only with the vLLM backend's REPORT_CUSTOM_METRICS on.
    needs_vllm_custom_metrics: bool = False

    @property
    def record(self) -> str:
        """Name of the recording rule's series (`level:metric` convention; the window follows the
        scrape interval, so it is not part of the name)."""
        return f"{RECORD_PREFIX}:{self.name}"

    def expr_for(self, window: str) -> str:
        """The PromQL with its rate/avg window filled in."""
        return self.expr.replace(_W, window)

    @property
    def autoscaling(self) -> bool:
        return bool(self.backends)


def _rate(series: str) -> str:
    return f"rate({series}[{_W}])"


def _avg_gauge(series: str, agg: str = "sum") -> str:
    return f"{agg} by ({_BY_POD}) (avg_over_time({series}[{_W}]))"


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


_TRTLLM_REQUESTS = "nv_trt_llm_request_metrics"
_TRTLLM_KV = "nv_trt_llm_kv_cache_block_metrics"
_KV_USED, _KV_MAX = '{kv_cache_block_type="used"}', '{kv_cache_block_type="max"}'

METRICS: dict[str, HpaMetric] = {
    m.name: m
    for m in [
        HpaMetric(
            "trtllm_active_requests",
            "requests",
            _avg_gauge(f'{_TRTLLM_REQUESTS}{{request_type="active"}}'),
            "requests in the TensorRT-LLM executor's in-flight batch (the backend's gauge, set from the "
            "executor's iteration statistics while requests run), averaged over the window; capped at the "
            "engine's max batch size",
            reported_by=("trtllm",),
            backends=("trtllm",),
            default_target=32.0,
            # Half the engine's in-flight batch: headroom for the minutes a new GPU node takes.
            target_from_model=lambda m: m.engine.max_batch_size / 2,
        ),
        HpaMetric(
            "trtllm_waiting_requests",
            "requests",
            _avg_gauge(f'{_TRTLLM_REQUESTS}{{request_type="waiting"}}'),
            "requests active in the TensorRT-LLM executor but not scheduled in the current iteration "
            "(waiting for KV cache or a batch slot), averaged over the window (label added after the 2024 "
            "backend; absent from older images)",
            reported_by=("trtllm",),
            backends=("trtllm",),
            default_target=4.0,
        ),
        HpaMetric(
            "trtllm_kv_cache_utilization",
            "ratio",
            f"{_avg_gauge(_TRTLLM_KV + _KV_USED)} / ({_avg_gauge(_TRTLLM_KV + _KV_MAX)} > 0)",
            "fraction of the TensorRT-LLM KV cache blocks in use (used / max, which every backend version reports)",
            reported_by=("trtllm",),
            backends=("trtllm",),
            default_target=0.8,
        ),
        HpaMetric(
            "vllm_requests_in_flight",
            "requests",
            f"sum by ({_BY_POD}) ({_rate('vllm:time_to_first_token_seconds_sum')}) + "
            f"sum by ({_BY_POD}) ({_rate('vllm:time_per_output_token_seconds_sum')})",
            "mean number of requests inside vLLM per pod (Little's law over the time-to-first-token and "
            "inter-token latency sums, which vLLM observes at the first token and at every decode step: the "
            "decode part moves while requests run, not when they finish)",
            reported_by=("vllm",),
            backends=("vllm",),
            default_target=8.0,
            needs_vllm_custom_metrics=True,
        ),
        HpaMetric(
            "vllm_time_to_first_token_ms",
            "ms",
            _ratio(
                "vllm:time_to_first_token_seconds_sum",
                "vllm:time_to_first_token_seconds_count",
                by=_BY_POD,
                scale=" * 1000",
            ),
            "mean time to first token per request (vLLM queueing + prefill), milliseconds",
            reported_by=("vllm",),
            backends=("vllm",),
            default_target=1000.0,
            needs_vllm_custom_metrics=True,
        ),
        HpaMetric(
            "triton_requests_in_flight",
            "requests",
            _max_over_models(f"{_per_model(_rate('nv_inference_request_duration_us'))} / 1e6"),
            "mean number of requests inside Triton per pod (Little's law over request durations, reported "
            "when a request finishes): the whole generation for Python models that generate in execute(); "
            "only at completion for TensorRT-LLM and only the hand-off for the vLLM backend",
            reported_by=BACKENDS,
            backends=("python",),
            default_target=2.0,
        ),
        HpaMetric(
            "triton_request_rate",
            "requests/s",
            f"sum by ({_BY_POD}) ({_rate(f'nv_inference_request_success{{{_SERVED}}}')})",
            "successful inference requests per second per pod, counted at the served model (the ensemble, "
            "not its composing models, which a streaming ensemble runs once per token); for the vLLM "
            "backend: requests handed to vLLM",
            reported_by=BACKENDS,
            backends=BACKENDS,
            default_target=5.0,
        ),
        HpaMetric(
            "triton_failure_rate",
            "requests/s",
            f"sum by ({_BY_POD}) ({_rate(f'nv_inference_request_failure{{{_SERVED}}}')})",
            "failed inference requests per second per pod at the served model (an ensemble's count includes "
            "its composing models' failures)",
            reported_by=BACKENDS,
        ),
        HpaMetric(
            "triton_queue_time_per_request_ms",
            "ms",
            _ratio("nv_inference_queue_duration_us", "nv_inference_request_success", scale=" / 1000"),
            "average time a request waited in Triton's scheduler queue, per request, milliseconds",
            reported_by=BACKENDS,
            backends=("python",),
            default_target=200.0,
        ),
        HpaMetric(
            "triton_compute_time_per_request_ms",
            "ms",
            _ratio("nv_inference_compute_infer_duration_us", "nv_inference_request_success", scale=" / 1000"),
            "average time the backend spent executing a request, per request, milliseconds",
            reported_by=BACKENDS,
        ),
        HpaMetric(
            "triton_queue_compute_ratio",
            "ratio",
            _ratio("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"),
            "time in Triton's queue over time in the backend (about the requests waiting per request "
            "executing, for a model that runs one request at a time)",
            reported_by=BACKENDS,
            backends=("python",),
            default_target=1.0,
        ),
        HpaMetric(
            "triton_pending_requests",
            "requests",
            _avg_gauge("nv_inference_pending_request_count"),
            "requests waiting in Triton's scheduler for an execute() call, averaged over the window",
            reported_by=BACKENDS,
        ),
    ]
}

# Kept for callers of the first catalog: the metrics an HPA may use.
HPA_METRICS: dict[str, HpaMetric] = {n: m for n, m in METRICS.items() if m.autoscaling}

# The default signal per backend: sampled while requests run (not at completion).
DEFAULT_HPA_METRIC = {
    "vllm": "vllm_requests_in_flight",
    "trtllm": "trtllm_active_requests",
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
            else f"on the {backend} backend it does not follow load (see components/catalog/serving_metrics.py)"
        )
        raise ValueError(
            f"metric {name!r} cannot scale a {backend} model: {why}; use one of "
            f"{sorted(n for n, m in HPA_METRICS.items() if backend in m.backends)}"
        )
    return found


def duration_seconds(duration: str) -> int:
    """Seconds of a Prometheus duration of one unit (`15s`, `1m`)."""
    units = {"s": 1, "m": 60, "h": 3600}
    if len(duration) < 2 or duration[-1] not in units or not duration[:-1].isdigit():
        raise ValueError(f"{duration!r} is not a duration like 15s or 1m")
    return int(duration[:-1]) * units[duration[-1]]


def duration_text(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def check_scrape_interval(scrape_interval: str) -> None:
    """Refuse a scrape interval the HPA cannot get a steady metric from (ValueError says why).

    Below 5 s Prometheus scrapes Triton (and evaluates every rule) faster than Triton's
    `--metrics-interval-ms` default of 2 s refreshes its per-interval metrics by much, for no gain;
    above 60 s the window (4 scrapes) exceeds 4 minutes, so a load step takes minutes to show, and
    the record's newest sample can be older than the HPA's sync period several times over.
    """
    seconds = duration_seconds(scrape_interval)
    if not MIN_SCRAPE_SECONDS <= seconds <= MAX_SCRAPE_SECONDS:
        raise ValueError(
            f"{scrape_interval} cannot drive the HPA: the rule window is {WINDOW_SCRAPES} scrape intervals, "
            f"so use {MIN_SCRAPE_SECONDS}s to {MAX_SCRAPE_SECONDS}s (the default {DEFAULT_SCRAPE_INTERVAL} "
            f"gives a {window_for(DEFAULT_SCRAPE_INTERVAL)} window)"
        )


def window_for(scrape_interval: str) -> str:
    """The rate()/avg_over_time() window for a scrape interval: WINDOW_SCRAPES scrapes."""
    return duration_text(WINDOW_SCRAPES * duration_seconds(scrape_interval))
