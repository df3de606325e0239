"""The generated recording rules, checked and unit-tested by the real promtool.

Synthetic series (15 s apart, counters rising at a constant slope so a 1 m rate
is exact) describe four pods; each expectation below is worked out by hand from
the series, not from the rules. The seeds' adapter rule runs on the same series
to show what it measures instead (milliseconds of queueing per second).

promtool comes from the Debian package `prometheus` (apt-get install prometheus).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.observability.builders import metrics

PROMTOOL = shutil.which("promtool")


def _promtool() -> str:
    if PROMTOOL is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: CI must `apt-get install -y prometheus`")
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return PROMTOOL


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def _pod(namespace: str, pod: str, **labels: str) -> dict[str, str]:
    return {"namespace": namespace, "pod": pod, "version": "1", **labels}


# One step is 15 s; a counter rising by x per step rises by 4x per minute. At the default
# 15 s scrape interval the rules' window is 1 m (metrics.window_for).
SCRAPE = "15s"
STEPS = "x40"  # 10 minutes of samples


def input_series() -> list[dict[str, str]]:
    s: list[dict[str, str]] = []
    # Pod llm/a (a single Python-backend model "m"): 3 requests a minute, each queued 30 ms,
    # computed 60 ms and 2 s end to end; 1 failure a minute; 3 requests pending.
    a = _pod("llm", "a", model="m")
    s += [
        _series("nv_inference_request_success", a, f"0+0.75{STEPS}"),  # 3 / min
        _series("nv_inference_queue_duration_us", a, f"0+22500{STEPS}"),  # 3 x 30 000 us / min
        _series("nv_inference_compute_infer_duration_us", a, f"0+45000{STEPS}"),  # 3 x 60 000 us / min
        _series("nv_inference_request_duration_us", a, f"0+1500000{STEPS}"),  # 3 x 2 s / min
        _series("nv_inference_request_failure", {**a, "reason": "BACKEND"}, f"0+0.25{STEPS}"),  # 1 / min
        _series("nv_inference_pending_request_count", a, f"3{STEPS}"),
    ]
    # Pod trt/b: a streaming TensorRT-LLM ensemble served as "llama" (build_engine.py renames the
    # ensemble to the stack's model name). 6 requests a minute of 100 tokens each. tensorrt_llm is
    # decoupled, so every response becomes one postprocessing request (Triton ensemble_models.md):
    # postprocessing counts 600 requests a minute, each token queued 25 us and computed 100 us.
    # Per request: preprocessing queue 5 ms / compute 20 ms, tensorrt_llm 2.5 ms / 2.9 s, ensemble 0 / 3 s.
    per_model = {  # model: (requests per step, queue us per request, duration us per request)
        "llama": (1.5, 0, 3_000_000),
        "preprocessing": (1.5, 5_000, 20_000),
        "tensorrt_llm": (1.5, 2_500, 2_900_000),
        "postprocessing": (150, 25, 100),
    }
    for model, (per_step, queue_us, duration_us) in per_model.items():
        labels = _pod("trt", "b", model=model)
        s += [
            _series("nv_inference_request_success", labels, f"0+{per_step:g}{STEPS}"),
            _series("nv_inference_queue_duration_us", labels, f"0+{per_step * queue_us:g}{STEPS}"),
            _series("nv_inference_compute_infer_duration_us", labels, f"0+{per_step * duration_us:g}{STEPS}"),
            _series("nv_inference_request_duration_us", labels, f"0+{per_step * duration_us:g}{STEPS}"),
        ]
    # The backend's gauges, label values as custom_metrics_reporter.cc emits them.
    engine = _pod("trt", "b", model="tensorrt_llm")
    for request_type, value in {"active": 20, "waiting": 4, "scheduled": 16, "context": 2, "max": 64}.items():
        s.append(_series("nv_trt_llm_request_metrics", {**engine, "request_type": request_type}, f"{value}{STEPS}"))
    for block_type, amount in {"max": 1000, "free": 500, "used": 500, "tokens_per": 64, "fraction": 0.5}.items():
        s.append(
            _series(
                "nv_trt_llm_kv_cache_block_metrics", {**engine, "kv_cache_block_type": block_type}, f"{amount}{STEPS}"
            )
        )
    # Pod chat/c: Triton's vLLM backend with REPORT_CUSTOM_METRICS, streaming. 6 requests a minute,
    # each 250 ms to its first token and 9.75 s of decoding (10 s end to end). vLLM observes the
    # time to first token at the first token and one inter-token latency per decode step, so the
    # two sums grow while requests run; e2e latency only when one finishes.
    c = _pod("chat", "c", model="llama")
    s += [
        _series("nv_inference_request_success", c, f"0+1.5{STEPS}"),  # arrivals (hand-off)
        _series("vllm:e2e_request_latency_seconds_count", c, f"0+1.5{STEPS}"),
        _series("vllm:e2e_request_latency_seconds_sum", c, f"0+15{STEPS}"),  # 6 x 10 s / min
        _series("vllm:time_to_first_token_seconds_count", c, f"0+1.5{STEPS}"),
        _series("vllm:time_to_first_token_seconds_sum", c, f"0+0.375{STEPS}"),  # 6 x 0.25 s / min
        _series("vllm:time_per_output_token_seconds_sum", c, f"0+14.625{STEPS}"),  # 6 x 9.75 s / min
    ]
    # Pods trt/long and chat/long: idle for 2 minutes, then 10 requests arrive at once and are still
    # generating 90 s later (nothing finishes within the test). TensorRT-LLM's active gauge reads 10
    # from the next iteration; its Triton counters do not move until the final responses.
    # vLLM: each request's first token after 0.5 s (observed in the 2m15 sample), then every running
    # request adds 1 s of inter-token latency per second: 150 s per step.
    trt_long = _pod("trt", "long", model="tensorrt_llm")
    s.append(_series("nv_trt_llm_request_metrics", {**trt_long, "request_type": "active"}, "0x8 10x32"))
    for model in ("llama", "tensorrt_llm", "postprocessing"):
        labels = _pod("trt", "long", model=model)
        s += [
            _series("nv_inference_request_success", labels, f"0{STEPS}"),
            _series("nv_inference_request_duration_us", labels, f"0{STEPS}"),
        ]
    chat_long = _pod("chat", "long", model="llama")
    s += [
        _series("nv_inference_request_success", chat_long, "0x8 10x32"),  # handed over at 2m
        _series("vllm:e2e_request_latency_seconds_sum", chat_long, f"0{STEPS}"),
        _series("vllm:time_to_first_token_seconds_sum", chat_long, "0x8 5x32"),  # 10 x 0.5 s
        _series("vllm:time_per_output_token_seconds_sum", chat_long, "0x8 145+150x31"),
    ]
    # Pod llm/idle: loaded but no traffic.
    idle = _pod("llm", "idle", model="m")
    for name in (
        "nv_inference_request_success",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_request_duration_us",
    ):
        s.append(_series(name, idle, f"0{STEPS}"))
    return s


# (metric, namespace, pod, eval time) -> expected value, worked out by hand from the series above.
EXPECTED: dict[tuple[str, str, str, str], float] = {
    ("triton_request_rate", "llm", "a", "5m"): 3 / 60,
    # the served model's 6 requests a minute; not postprocessing's 600 (one per token)
    ("triton_request_rate", "trt", "b", "5m"): 6 / 60,
    ("triton_request_rate", "chat", "c", "5m"): 6 / 60,
    ("triton_request_rate", "llm", "idle", "5m"): 0,
    ("triton_failure_rate", "llm", "a", "5m"): 1 / 60,
    ("triton_queue_time_per_request_ms", "llm", "a", "5m"): 30,  # 3 requests x 30 ms -> 30 ms each
    ("triton_queue_time_per_request_ms", "trt", "b", "5m"): 5,  # the busiest stage, preprocessing
    ("triton_queue_time_per_request_ms", "llm", "idle", "5m"): 0,  # idle reads 0, not NaN
    ("triton_compute_time_per_request_ms", "llm", "a", "5m"): 60,
    ("triton_compute_time_per_request_ms", "trt", "b", "5m"): 3000,
    ("triton_compute_time_per_request_ms", "llm", "idle", "5m"): 0,
    ("triton_queue_compute_ratio", "llm", "a", "5m"): 0.5,  # 30 ms / 60 ms
    ("triton_queue_compute_ratio", "trt", "b", "5m"): 0.25,  # preprocessing 5/20, postprocessing 25/100 us
    ("triton_queue_compute_ratio", "llm", "idle", "5m"): 0,
    ("triton_requests_in_flight", "llm", "a", "5m"): 0.1,  # 0.05 req/s x 2 s
    ("triton_requests_in_flight", "trt", "b", "5m"): 0.3,  # 0.1 req/s x 3 s (ensemble)
    ("triton_requests_in_flight", "llm", "idle", "5m"): 0,
    # ... and 0 while ten requests run: TensorRT-LLM reports durations at the final response
    ("triton_requests_in_flight", "trt", "long", "3m30s"): 0,
    ("triton_pending_requests", "llm", "a", "5m"): 3,
    ("vllm_requests_in_flight", "chat", "c", "5m"): 1.0,  # 0.1 req/s x (0.25 + 9.75) s
    # ten running requests read 10 while they run (window 2m30-3m30: 150 s of decode per 15 s)
    ("vllm_requests_in_flight", "chat", "long", "3m30s"): 10,
    ("vllm_requests_in_flight", "chat", "long", "1m30s"): 0,  # before they arrive
    ("vllm_time_to_first_token_ms", "chat", "c", "5m"): 250,
    ("trtllm_waiting_requests", "trt", "b", "5m"): 4,
    ("trtllm_active_requests", "trt", "b", "5m"): 20,
    ("trtllm_active_requests", "trt", "long", "3m30s"): 10,  # the gauge, while they run
    ("trtllm_active_requests", "trt", "long", "1m30s"): 0,
    ("trtllm_kv_cache_utilization", "trt", "b", "5m"): 0.5,  # 500 used / 1000 blocks
}

# What the old default (Little's law over vLLM's e2e latency, observed at completion) reads for the
# ten running requests: nothing. Kept to show why the default changed.
E2E_IN_FLIGHT = 'sum by (namespace, pod) (rate(vllm:e2e_request_latency_seconds_sum{pod="long"}[1m]))'


def _test_file(rule_file: Path) -> dict:
    tests = []
    for (metric, namespace, pod, at), value in EXPECTED.items():
        record = metrics.METRICS[metric].record
        tests.append(
            {
                "expr": f'{record}{{namespace="{namespace}",pod="{pod}"}}',
                "eval_time": at,
                "exp_samples": [
                    {
                        "labels": f'{record}{{namespace="{namespace}",pod="{pod}",unit="{metrics.METRICS[metric].unit}"}}',
                        "value": value,
                    }
                ],
            }
        )
    # The adapter's query for each backend's default HPA metric, substituted as prometheus-adapter
    # does, over the record (one pod, then several).
    for backend, namespace, pods, values in (
        ("python", "llm", ["a", "idle"], [0.1, 0]),
        ("trtllm", "trt", ["b", "long"], [20, 10]),
        ("vllm", "chat", ["c", "long"], [1.0, 10]),
    ):
        record = metrics.hpa_metric_for(backend, None).record
        tests.append(
            {
                "expr": metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, record, namespace, pods[:1]),
                "eval_time": "3m30s",
                "exp_samples": [{"labels": f'{{pod="{pods[0]}"}}', "value": values[0]}],
            }
        )
        tests.append(
            {
                "expr": metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, record, namespace, pods),
                "eval_time": "3m30s",
                "exp_samples": [{"labels": f'{{pod="{p}"}}', "value": v} for p, v in zip(pods, values, strict=True)],
            }
        )
    # The old vLLM default reads the ten running requests as none.
    tests.append(
        {
            "expr": E2E_IN_FLIGHT,
            "eval_time": "3m30s",
            "exp_samples": [{"labels": '{namespace="chat",pod="long"}', "value": 0}],
        }
    )
    # The seeds' rule on the same series: 3 x 30 ms of queueing per minute is 1.5 ms per
    # second, whatever the per-request wait; on the ensemble pod it averages the four models'
    # ms/s: (0 + 5 + 2.5 + 100 x 0.025) ms x 6 / 60 s / 4 = 0.25.
    tests.append(
        {
            "expr": metrics.render_metrics_query(
                metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us", "llm", ["a"]
            ),
            "eval_time": "5m",
            "exp_samples": [{"labels": '{pod="a"}', "value": 1.5}],
        }
    )
    tests.append(
        {
            "expr": metrics.render_metrics_query(
                metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us", "trt", ["b"]
            ),
            "eval_time": "5m",
            "exp_samples": [{"labels": '{pod="b"}', "value": 0.25}],
        }
    )
    return {
        "rule_files": [str(rule_file)],
        "evaluation_interval": SCRAPE,
        "tests": [{"interval": SCRAPE, "input_series": input_series(), "promql_expr_test": tests}],
    }


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "tritonllm-rules.yaml"
    # A PrometheusRule's spec.groups is exactly a Prometheus rule file's `groups`.
    manifest = metrics.prometheus_rule_manifest("monitoring", scrape_interval=SCRAPE)
    path.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    return path


def test_promtool_check_rules_accepts_the_generated_rules(rule_file):
    result = subprocess.run([_promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(metrics.METRICS)} rules found" in result.stdout


def test_every_record_has_a_hand_computed_expectation():
    assert {metric for metric, *_ in EXPECTED} == set(metrics.METRICS)


def test_promtool_test_rules_computes_the_intended_numbers(rule_file, tmp_path):
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(_test_file(rule_file), sort_keys=False))
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_fails_on_a_wrong_expectation(rule_file, tmp_path):
    """The harness can fail: the same test with 30 ms replaced by 31 ms is rejected."""
    data = _test_file(rule_file)
    for case in data["tests"][0]["promql_expr_test"]:
        if "triton_queue_time_per_request_ms" in case["expr"] and 'pod="a"' in case["expr"]:
            case["exp_samples"][0]["value"] = 31
    test_file = tmp_path / "wrong.yaml"
    test_file.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "triton_queue_time_per_request_ms" in result.stdout + result.stderr


@pytest.mark.parametrize("scrape", ["5s", "15s", "30s", "60s"])
def test_rules_give_a_value_at_every_accepted_scrape_interval(tmp_path, scrape):
    """3 requests a minute at pod a, scraped every `scrape`: the rate record reads 0.05/s.

    (The old fixed 1m window held one or two samples at a 60 s scrape, depending on scrape
    timing: rate() then flips between a value and nothing. promtool's perfectly aligned samples
    cannot show that; the window of four scrapes never depends on alignment.)
    """
    seconds = metrics.duration_seconds(scrape)
    series = [_series("nv_inference_request_success", _pod("llm", "a", model="m"), f"0+{3 * seconds / 60:g}x60")]
    record = metrics.METRICS["triton_request_rate"].record
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": metrics.rule_groups(scrape)}))
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": scrape,
                "tests": [
                    {
                        "interval": scrape,
                        "input_series": series,
                        "promql_expr_test": [
                            {
                                "expr": f'{record}{{pod="a"}}',
                                "eval_time": f"{30 * seconds}s",
                                "exp_samples": [
                                    {"labels": f'{record}{{namespace="llm",pod="a",unit="requests/s"}}', "value": 0.05}
                                ],
                            },
                        ],
                    }
                ],
            },
            sort_keys=False,
        )
    )
    result = subprocess.run([_promtool(), "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_window_spans_four_scrapes_and_bad_intervals_are_refused():
    assert [metrics.window_for(s) for s in ("5s", "15s", "30s", "60s")] == ["20s", "1m", "2m", "4m"]
    assert metrics.rule_groups("30s")[0]["interval"] == "30s"
    assert "[2m]" in metrics.rule_groups("30s")[0]["rules"][0]["expr"]
    for bad in ("2s", "90s", "2m"):
        with pytest.raises(ValueError, match="5s to 60s"):
            metrics.rule_groups(bad)
