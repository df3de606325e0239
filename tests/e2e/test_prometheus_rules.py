"""The project's recording rules, adapter queries and dashboard against a real Prometheus
scraping the real local Triton (fixture `triton_server`) under load from `tritonllm bench`
(AIPerf, smoke-sized).

Expected values come from Triton's own statistics API (/v2/models/<m>/stats), read
before and after the load: the recorded per-request queue and compute times must
equal the exact averages over the load; rates, which Prometheus extrapolates over
the 1 m window, must match within a few percent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.observability.builders import metrics
from components.observability.builders.dashboards import triton as triton_dashboard
from tests.e2e.prometheus_fixture import LocalPrometheus, PrometheusError, ScrapeTarget, prometheus_binary

pytestmark = pytest.mark.e2e

POD = "triton-local-0"
SCRAPE_INTERVAL = "1s"
# The stack default's rules (15 s scrape -> 1 m window), evaluated every second here so the test
# reads them without waiting for a 15 s evaluation.
RULE_SCRAPE = "15s"
WINDOW_SECONDS = metrics.duration_seconds(metrics.window_for(RULE_SCRAPE))


def _rule_groups() -> list[dict]:
    groups = metrics.rule_groups(RULE_SCRAPE)
    for group in groups:
        group["interval"] = SCRAPE_INTERVAL
    return groups


# Load that fits well inside one rule window on 2 cores: the bench's smoke preset (32 in /
# 8 out tokens), 6 requests 3 at a time against the model's single instance, so requests
# queue in Triton. AIPerf adds its warm-up requests; expectations come from Triton's stats.
REQUESTS, CONCURRENCY = 6, 3


def _stats(server) -> dict:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{server.model_name}/stats", timeout=10) as resp:
        (stats,) = json.loads(resp.read())["model_stats"]
    return stats["inference_stats"]


@dataclass
class Load:
    before: dict
    after: dict
    started: float
    finished: float
    evaluated_at: float

    def delta(self, key: str, field: str = "ns") -> float:
        return self.after[key][field] - self.before[key][field]

    @property
    def requests(self) -> int:
        return int(self.delta("success", "count"))


@pytest.fixture(scope="module")
def prometheus(triton_server):
    if prometheus_binary() is None:
        pytest.fail("prometheus is not installed: apt-get install -y prometheus", pytrace=False)
    address = triton_server.metrics_url.split("//", 1)[1].split("/", 1)[0]
    target = ScrapeTarget(address, {"namespace": triton_server.model_name, "pod": POD})
    with LocalPrometheus([target], _rule_groups(), scrape_interval=SCRAPE_INTERVAL) as prom:
        prom.wait_for_series(f'nv_inference_request_success{{pod="{POD}"}}')
        # the record exists once the rule has two samples of the counters
        prom.wait_for_series(metrics.METRICS["triton_request_rate"].record)
        yield prom


@pytest.fixture(scope="module")
def aiperf() -> Path:
    from tritonllm.bench import aiperf_executable, setup_aiperf

    # AIPerf lives in its own virtualenv (.cache/aiperf-venv), created on first use
    return aiperf_executable() or setup_aiperf(quiet=True)


@pytest.fixture(scope="module")
def load(triton_server, prometheus, aiperf, tmp_path_factory) -> Load:
    out = tmp_path_factory.mktemp("bench")
    # Samples must cover the whole rule window before the load starts, so that rate()
    # extrapolates over a full window as it does in a long-running Prometheus.
    time.sleep(max(2.0, prometheus.started_at + WINDOW_SECONDS + 3 - time.time()))
    before = _stats(triton_server)
    started = time.time()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "bench",
            "--url",
            triton_server.http_url,
            "--model-name",
            triton_server.model_name,
            "--preset",
            "smoke",
            "--concurrency",
            str(CONCURRENCY),
            "--request-count",
            str(REQUESTS),
            "--aiperf",
            str(aiperf),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    finished = time.time()
    assert result.returncode == 0, result.stdout + result.stderr
    after = _stats(triton_server)
    prometheus.wait_for_scrape_after(finished)
    evaluated_at = time.time()
    if evaluated_at - WINDOW_SECONDS > started - 1.5:
        pytest.fail(
            f"the bench took {finished - started:.0f} s: it no longer fits one {WINDOW_SECONDS} s rule "
            "window with idle samples before it; lower REQUESTS",
            pytrace=False,
        )
    loaded = Load(before, after, started, finished, evaluated_at)
    assert loaded.requests >= REQUESTS  # plus AIPerf's warm-up requests
    assert loaded.delta("queue") > 0, "requests should have queued in front of the single model instance"
    return loaded


def _one(prometheus: LocalPrometheus, expr: str, at: float) -> tuple[dict, float]:
    result = prometheus.query(expr, at=at)
    assert len(result) == 1, f"{expr}: {result}"
    return result[0]


def _record(prometheus, name: str, at: float) -> float:
    labels, value = _one(prometheus, f'{metrics.METRICS[name].record}{{pod="{POD}"}}', at)
    assert labels["namespace"] and labels["pod"] == POD
    return value


def test_per_request_records_equal_triton_statistics_over_the_load(prometheus, load):
    n = load.requests
    queue_ms = load.delta("queue") / n / 1e6
    compute_ms = load.delta("compute_infer") / n / 1e6
    at = load.evaluated_at
    # Triton's counters sum per-request microseconds; the stats API keeps nanoseconds.
    assert _record(prometheus, "triton_queue_time_per_request_ms", at) == pytest.approx(queue_ms, rel=1e-3)
    assert _record(prometheus, "triton_compute_time_per_request_ms", at) == pytest.approx(compute_ms, rel=1e-3)
    assert _record(prometheus, "triton_queue_compute_ratio", at) == pytest.approx(
        load.delta("queue") / load.delta("compute_infer"), rel=1e-3
    )


def test_rate_records_match_triton_statistics_within_extrapolation(prometheus, load):
    at = load.evaluated_at
    # rate() extrapolates the samples' span (~59 s at a 1 s scrape) to the 60 s window
    assert _record(prometheus, "triton_request_rate", at) == pytest.approx(load.requests / WINDOW_SECONDS, rel=0.05)
    in_flight = load.delta("success") / 1e9 / WINDOW_SECONDS  # request-seconds per second
    assert _record(prometheus, "triton_requests_in_flight", at) == pytest.approx(in_flight, rel=0.05)
    assert _record(prometheus, "triton_failure_rate", at) == 0


@pytest.mark.parametrize("name", sorted(n for n, m in metrics.HPA_METRICS.items() if "python" in m.reported_by))
def test_adapter_metrics_query_returns_the_per_pod_value(prometheus, load, triton_server, name):
    metric = metrics.HPA_METRICS[name]
    (rule,) = [r for r in metrics.adapter_rules() if r["name"]["as"] == name]
    # series discovery: what the adapter lists with its seriesQuery carries the resource labels
    discovered = prometheus.series(rule["seriesQuery"], load.started)
    assert {(s["namespace"], s["pod"]) for s in discovered} == {(triton_server.model_name, POD)}
    expected = _record(prometheus, name, load.evaluated_at)
    for pods in ([POD], [POD, "triton-local-1"]):  # one pod: pod="..."; several: pod=~"a|b"
        query = metrics.render_metrics_query(rule["metricsQuery"], metric.record, triton_server.model_name, pods)
        labels, value = _one(prometheus, query, load.evaluated_at)
        assert labels == {"pod": POD}
        assert value == pytest.approx(expected, rel=1e-9)
    # another namespace's pods never answer for this one
    other = metrics.render_metrics_query(rule["metricsQuery"], metric.record, "other-model", [POD])
    assert prometheus.query(other, at=load.evaluated_at) == []


def test_seed_metric_measures_queueing_per_second_not_per_request(prometheus, load, triton_server):
    query = metrics.render_metrics_query(
        metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us", triton_server.model_name, [POD]
    )
    _, seed = _one(prometheus, query, load.evaluated_at)
    queue_ms_per_second = load.delta("queue") / 1e6 / WINDOW_SECONDS
    assert seed == pytest.approx(queue_ms_per_second, rel=0.05)
    per_request = _record(prometheus, "triton_queue_time_per_request_ms", load.evaluated_at)
    # the same queueing reads as a different number: ms per second of wall time vs ms per request
    assert seed == pytest.approx(per_request * load.requests / WINDOW_SECONDS, rel=0.05)


def test_every_dashboard_panel_query_evaluates(prometheus, load, triton_server):
    errors, empty = [], []
    variables = {"$namespace": triton_server.model_name}
    for panel in triton_dashboard.panels():
        for target in panel.targets:
            expr = triton_dashboard.expand(target.expr, variables)
            try:
                result = prometheus.query(expr, at=load.evaluated_at)
            except PrometheusError as exc:
                errors.append(f"{panel.title}: {exc}")
                continue
            # series the local server exports must be there; GPU, Kubernetes, vLLM and
            # TensorRT-LLM ones cannot be, and their queries only have to evaluate
            if target.source in ("triton", "local") and not result:
                empty.append(f"{panel.title}: {expr}")
    assert not errors, "\n".join(errors)
    assert not empty, "queries over series the local Triton exports returned nothing:\n" + "\n".join(empty)
    # the JSON Grafana gets holds exactly these queries
    json_queries = [q for _, q in triton_dashboard.panel_queries(triton_dashboard.dashboard(), variables)]
    assert json_queries == [
        triton_dashboard.expand(t.expr, variables) for p in triton_dashboard.panels() for t in p.targets
    ]
