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

from components import metrics

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


# One step is 15 s; a counter rising by x per step rises by 4x per minute.
STEPS = "x40"  # 10 minutes of samples


def input_series() -> list[dict[str, str]]:
    s: list[dict[str, str]] = []
    # Pod llm/a (a single Python-backend model "m"): 3 requests a minute, each queued 30 ms,
    # computed 60 ms and 2 s end to end; 1 failure a minute; 3 requests pending.
    a = _pod("llm", "a", model="m")
    s += [
        _series("nv_inference_request_success", a, f"0+0.75{STEPS}"),          # 3 / min
        _series("nv_inference_queue_duration_us", a, f"0+22500{STEPS}"),       # 3 x 30 000 us / min
        _series("nv_inference_compute_infer_duration_us", a, f"0+45000{STEPS}"),  # 3 x 60 000 us / min
        _series("nv_inference_request_duration_us", a, f"0+1500000{STEPS}"),   # 3 x 2 s / min
        _series("nv_inference_request_failure", {**a, "reason": "BACKEND"}, f"0+0.25{STEPS}"),  # 1 / min
        _series("nv_inference_pending_request_count", a, f"3{STEPS}"),
    ]
    # Pod trt/b: a TensorRT-LLM ensemble; each request passes through the four models once.
    # 6 requests a minute. Queue per request: preprocessing 5 ms, tensorrt_llm 1 ms,
    # postprocessing 2 ms, ensemble 0. End to end (ensemble) 3 s, tensorrt_llm 2.9 s.
    per_model = {"ensemble": (0, 3_000_000), "preprocessing": (5_000, 20_000),
                 "tensorrt_llm": (1_000, 2_900_000), "postprocessing": (2_000, 10_000)}
    for model, (queue_us, duration_us) in per_model.items():
        labels = _pod("trt", "b", model=model)
        s += [
            _series("nv_inference_request_success", labels, f"0+1.5{STEPS}"),                 # 6 / min
            _series("nv_inference_queue_duration_us", labels, f"0+{int(1.5 * queue_us)}{STEPS}"),
            _series("nv_inference_compute_infer_duration_us", labels, f"0+{int(1.5 * duration_us)}{STEPS}"),
            _series("nv_inference_request_duration_us", labels, f"0+{int(1.5 * duration_us)}{STEPS}"),
        ]
    engine = _pod("trt", "b", model="tensorrt_llm")
    for request_type, value in {"active": 20, "waiting": 4, "scheduled": 16, "max": 64}.items():
        s.append(_series("nv_trt_llm_request_metrics", {**engine, "request_type": request_type}, f"{value}{STEPS}"))
    s.append(_series("nv_trt_llm_kv_cache_block_metrics", {**engine, "kv_cache_block_type": "fraction"},
                     f"0.5{STEPS}"))
    # Pod chat/c: Triton's vLLM backend with REPORT_CUSTOM_METRICS. 6 requests a minute,
    # each 10 s end to end with a 250 ms time to first token.
    c = _pod("chat", "c", model="llama")
    s += [
        _series("nv_inference_request_success", c, f"0+1.5{STEPS}"),
        _series("vllm:e2e_request_latency_seconds_count", c, f"0+1.5{STEPS}"),
        _series("vllm:e2e_request_latency_seconds_sum", c, f"0+15{STEPS}"),         # 6 x 10 s / min
        _series("vllm:time_to_first_token_seconds_count", c, f"0+1.5{STEPS}"),
        _series("vllm:time_to_first_token_seconds_sum", c, f"0+0.375{STEPS}"),     # 6 x 0.25 s / min
    ]
    # Pod llm/idle: loaded but no traffic.
    idle = _pod("llm", "idle", model="m")
    for name in ("nv_inference_request_success", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_inference_request_duration_us"):
        s.append(_series(name, idle, f"0{STEPS}"))
    return s


# (metric, namespace, pod) -> expected value at 5 m.
EXPECTED: dict[tuple[str, str, str], float] = {
    ("triton_request_rate", "llm", "a"): 3 / 60,
    ("triton_request_rate", "trt", "b"): 6 / 60,              # not 4 x 6 / 60: one ensemble request
    ("triton_request_rate", "chat", "c"): 6 / 60,
    ("triton_request_rate", "llm", "idle"): 0,
    ("triton_failure_rate", "llm", "a"): 1 / 60,
    ("triton_queue_time_per_request_ms", "llm", "a"): 30,    # 3 requests x 30 ms -> 30 ms each
    ("triton_queue_time_per_request_ms", "trt", "b"): 5,     # the busiest stage, preprocessing
    ("triton_queue_time_per_request_ms", "llm", "idle"): 0,  # idle reads 0, not NaN
    ("triton_compute_time_per_request_ms", "llm", "a"): 60,
    ("triton_compute_time_per_request_ms", "trt", "b"): 3000,
    ("triton_compute_time_per_request_ms", "llm", "idle"): 0,
    ("triton_queue_compute_ratio", "llm", "a"): 0.5,         # 30 ms / 60 ms
    ("triton_queue_compute_ratio", "trt", "b"): 0.25,        # preprocessing 5 ms / 20 ms
    ("triton_queue_compute_ratio", "llm", "idle"): 0,
    ("triton_requests_in_flight", "llm", "a"): 0.1,          # 0.05 req/s x 2 s
    ("triton_requests_in_flight", "trt", "b"): 0.3,          # 0.1 req/s x 3 s (ensemble)
    ("triton_requests_in_flight", "llm", "idle"): 0,
    ("triton_pending_requests", "llm", "a"): 3,
    ("vllm_requests_in_flight", "chat", "c"): 1.0,           # 0.1 req/s x 10 s
    ("vllm_time_to_first_token_ms", "chat", "c"): 250,
    ("trtllm_waiting_requests", "trt", "b"): 4,
    ("trtllm_active_requests", "trt", "b"): 20,
    ("trtllm_kv_cache_utilization", "trt", "b"): 0.5,
}



def _test_file(rule_file: Path) -> dict:
    tests = []
    for (metric, namespace, pod), value in EXPECTED.items():
        record = metrics.METRICS[metric].record
        tests.append({
            "expr": f'{record}{{namespace="{namespace}",pod="{pod}"}}',
            "eval_time": "5m",
            "exp_samples": [{"labels": f'{record}{{namespace="{namespace}",pod="{pod}",unit="{metrics.METRICS[metric].unit}"}}',
                             "value": value}],
        })
    # The adapter's query for the default HPA metric, substituted as prometheus-adapter does,
    # over the record (one pod, then several).
    in_flight = metrics.METRICS["triton_requests_in_flight"]
    tests.append({
        "expr": metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, in_flight.record, "llm", ["a"]),
        "eval_time": "5m",
        "exp_samples": [{"labels": '{pod="a"}', "value": 0.1}],
    })
    tests.append({
        "expr": metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, in_flight.record, "llm", ["a", "idle"]),
        "eval_time": "5m",
        "exp_samples": [{"labels": '{pod="a"}', "value": 0.1}, {"labels": '{pod="idle"}', "value": 0}],
    })
    # The seeds' rule on the same series: 3 x 30 ms of queueing per minute is 1.5 ms per
    # second, whatever the per-request wait; on the ensemble pod it averages the four models'
    # ms/s: (0 + 5 + 1 + 2) ms x 6 / 60 s / 4 = 0.2.
    tests.append({
        "expr": metrics.render_metrics_query(metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us", "llm", ["a"]),
        "eval_time": "5m",
        "exp_samples": [{"labels": '{pod="a"}', "value": 1.5}],
    })
    tests.append({
        "expr": metrics.render_metrics_query(metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us", "trt", ["b"]),
        "eval_time": "5m",
        "exp_samples": [{"labels": '{pod="b"}', "value": 0.2}],
    })
    return {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": input_series(), "promql_expr_test": tests}],
    }


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "tritonllm-rules.yaml"
    # A PrometheusRule's spec.groups is exactly a Prometheus rule file's `groups`.
    path.write_text(yaml.safe_dump({"groups": metrics.prometheus_rule_manifest("monitoring")["spec"]["groups"]}))
    return path


def test_promtool_check_rules_accepts_the_generated_rules(rule_file):
    result = subprocess.run([_promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(metrics.METRICS)} rules found" in result.stdout


def test_every_record_has_a_hand_computed_expectation():
    assert {metric for metric, _, _ in EXPECTED} == set(metrics.METRICS)


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
