"""The metrics catalog: HPA metric choice per backend, and the rules, adapter rules, PodMonitor
and dashboard generated from it agreeing with each other."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from components import config
from components.observability.builders import metrics
from components.observability.builders.dashboards import triton as triton_dashboard
from tests.k8s_schema import validate_custom_resource

BASE = {
    "region": "us-west-2",
    "nodePools": [{"name": "g6e", "instanceFamilies": ["g6e"]}],
    "gateway": {"tls": {"plaintextInsideVpc": True}},  # no TLS choice = config error (issue 10)
}


def _model(**overrides) -> config.ModelConfig:
    raw = {
        **BASE,
        "models": [{"name": "m", "backend": "trtllm", "hfModelId": "org/model", "nodePool": "g6e", **overrides}],
    }
    return config.parse_stack_config(raw).models[0]


# --------------------------------------------------------------------------- choice of metric


@pytest.mark.parametrize(
    "backend, expected",
    [
        ("vllm", "vllm_requests_in_flight"),
        ("trtllm", "trtllm_active_requests"),
        ("python", "triton_requests_in_flight"),
    ],
)
def test_default_metric_per_backend(backend, expected):
    chosen = metrics.hpa_metric_for(backend, None)
    assert chosen.name == expected
    assert backend in chosen.backends and backend in chosen.reported_by


@pytest.mark.parametrize("backend, metric", [("trtllm", "trtllm_active_requests"), ("vllm", "vllm_requests_in_flight")])
def test_default_signals_read_series_sampled_while_requests_run(backend, metric):
    """Not Triton's request durations (reported at the final response) nor vLLM's e2e latency."""
    expr = metrics.METRICS[metric].expr
    assert "nv_inference_request_duration_us" not in expr and "e2e_request_latency" not in expr
    if backend == "trtllm":
        assert 'nv_trt_llm_request_metrics{request_type="active"}' in expr
    else:
        assert "vllm:time_per_output_token_seconds_sum" in expr and "vllm:time_to_first_token_seconds_sum" in expr


def test_request_rate_counts_the_served_model_only():
    expr = metrics.METRICS["triton_request_rate"].expr_for("1m")
    assert 'nv_inference_request_success{model!~"preprocessing|tensorrt_llm|postprocessing|tensorrt_llm_bls"}' in expr
    with pytest.raises(config.ConfigError, match="composing model"):
        config.parse_stack_config(
            {**BASE, "models": [{"name": "postprocessing", "backend": "trtllm", "hfModelId": "a/b", "nodePool": "g6e"}]}
        )


def test_composing_models_match_the_trtllm_repository_the_build_writes():
    import importlib.util

    from components.serving.builders.model_repository import REPO_ROOT

    spec = importlib.util.spec_from_file_location("build_engine", REPO_ROOT / "model_repository/trtllm/build_engine.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert set(build.TEMPLATE_MODELS) - {"ensemble"} <= set(metrics.COMPOSING_MODELS)


@pytest.mark.parametrize(
    "scrape, relist, max_age", [("5s", "30s", "40s"), ("15s", "30s", "1m"), ("30s", "1m", "2m"), ("60s", "2m", "4m")]
)
def test_adapter_listing_outlives_two_rule_evaluations(scrape, relist, max_age):
    timing = metrics.adapter_timing(scrape)
    assert (timing.relist_interval, timing.max_age) == (relist, max_age)
    evaluation = metrics.duration_seconds(scrape)
    assert metrics.duration_seconds(timing.max_age) >= metrics.duration_seconds(timing.relist_interval) + 2 * evaluation


@pytest.mark.parametrize("interval", ["2s", "90s", "2m"])
def test_stack_config_refuses_a_scrape_interval_the_rules_cannot_follow(interval):
    with pytest.raises(config.ConfigError) as err:
        config.parse_stack_config({**BASE, "monitoring": {"scrapeInterval": interval}})
    key, message = err.value.problems[0]
    assert key == "monitoring.scrapeInterval" and "5s to 60s" in message


def test_catalog_backends_are_known_and_autoscaling_metrics_have_targets():
    for metric in metrics.METRICS.values():
        assert set(metric.backends) <= set(metric.reported_by) <= set(metrics.BACKENDS), metric.name
        assert (metric.default_target is not None) == metric.autoscaling, metric.name
    assert set(metrics.DEFAULT_HPA_METRIC) == set(metrics.BACKENDS)


def test_metrics_that_do_not_follow_load_on_a_backend_are_refused_with_the_reason():
    # Triton's queue never fills in front of the vLLM backend's non-blocking execute().
    with pytest.raises(ValueError, match="does not follow load.*vllm_requests_in_flight"):
        metrics.hpa_metric_for("vllm", "triton_queue_time_per_request_ms")
    # TensorRT-LLM reports request durations at the final response: no in-flight signal from them
    with pytest.raises(ValueError, match="does not follow load.*trtllm_active_requests"):
        metrics.hpa_metric_for("trtllm", "triton_requests_in_flight")
    with pytest.raises(ValueError, match="does not report it"):
        metrics.hpa_metric_for("vllm", "trtllm_waiting_requests")
    with pytest.raises(ValueError, match="unknown autoscaling metric 'gpu_magic'"):
        metrics.hpa_metric_for("trtllm", "gpu_magic")
    with pytest.raises(ValueError, match="unknown autoscaling metric 'triton_pending_requests'"):
        metrics.hpa_metric_for("trtllm", "triton_pending_requests")  # dashboard only


def test_stack_config_rejects_a_metric_the_backend_cannot_scale_on():
    raw = {
        **BASE,
        "models": [
            {
                "name": "m",
                "backend": "vllm",
                "hfModelId": "org/model",
                "nodePool": "g6e",
                "autoscaling": {"metric": "trtllm_waiting_requests"},
            }
        ],
    }
    with pytest.raises(config.ConfigError) as err:
        config.parse_stack_config(raw)
    assert err.value.problems[0][0] == "models[0].autoscaling.metric"


def test_hpa_metric_spec_trtllm_default_target_is_half_the_engine_batch():
    spec = metrics.hpa_metric_spec(_model(engine={"maxBatchSize": 96}))
    assert spec == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "trtllm_active_requests"},
            "target": {"type": "AverageValue", "averageValue": "48"},
        },
    }


def test_hpa_metric_spec_configured_metric_and_fractional_target():
    spec = metrics.hpa_metric_spec(_model(autoscaling={"metric": "trtllm_waiting_requests", "target": 1.5}))
    assert spec["pods"]["metric"]["name"] == "trtllm_waiting_requests"
    assert spec["pods"]["target"]["averageValue"] == "1500m"


def test_hpa_metric_spec_vllm_default():
    spec = metrics.hpa_metric_spec(_model(backend="vllm"))
    assert spec["pods"]["metric"]["name"] == "vllm_requests_in_flight"
    assert spec["pods"]["target"]["averageValue"] == "8"


# --------------------------------------------------------------------------- one source of truth


def test_every_hpa_metric_has_exactly_one_adapter_rule_over_its_recording_rule():
    records = {r["record"] for g in metrics.rule_groups() for r in g["rules"]}
    rules = metrics.adapter_rules()
    assert sorted(r["name"]["as"] for r in rules) == sorted(metrics.HPA_METRICS)
    for rule in rules:
        series = rule["seriesQuery"].split("{")[0]
        assert series in records
        # the adapter renames the series it discovers with matches/as: the HPA's name comes out
        assert re.fullmatch(rule["name"]["matches"], series)
        assert re.sub(rule["name"]["matches"], rule["name"]["as"], series) == rule["name"]["as"]
        assert metrics.HPA_METRICS[rule["name"]["as"]].record == series
        assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
        assert {"<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"} <= set(
            re.findall(r"<<\.\w+>>", rule["metricsQuery"])
        )


def test_recording_rules_group_by_namespace_and_pod_only():
    for group in metrics.rule_groups():
        for rule in group["rules"]:
            outer = re.match(r"(max|sum) by \(([^)]*)\)", rule["expr"])
            assert outer and outer.group(2) == "namespace, pod", rule["record"]


def test_prometheus_rule_manifest_matches_the_crd():
    manifest = metrics.prometheus_rule_manifest("monitoring", scrape_interval="30s")
    validate_custom_resource(manifest)
    assert manifest["spec"]["groups"][0]["interval"] == "30s"


def test_pod_monitor_selects_the_triton_pods_metrics_port():
    manifest = metrics.pod_monitor_manifest("llama-3-2-1b", "llama-3-2-1b", scrape_interval="30s")
    validate_custom_resource(manifest)
    assert manifest["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": "llama-3-2-1b",
        "tritonllm.io/model": "llama-3-2-1b",
    }
    assert manifest["spec"]["namespaceSelector"] == {"matchNames": ["llama-3-2-1b"]}
    (endpoint,) = manifest["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")


@pytest.mark.parametrize(
    "pods, matcher",
    [
        (["triton-0"], 'pod="triton-0"'),
        (["triton-0", "triton-1"], 'pod=~"triton-0|triton-1"'),
    ],
)
def test_metrics_query_substitution_follows_prometheus_adapter(pods, matcher):
    query = metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, "s:x:1m", "llama", pods)
    assert query == f'max by (pod) (s:x:1m{{namespace="llama",{matcher}}})'


def test_metrics_query_quotes_like_go():
    query = metrics.render_metrics_query("<<.LabelMatchers>>", "s", 'we"ird\\ns', ["p"])
    assert query == 'namespace="we\\"ird\\\\ns",pod="p"'


def test_dashboard_plots_the_records_it_names_and_every_default_hpa_metric():
    records = {m.record for m in metrics.METRICS.values()}
    exprs = [t.expr for p in triton_dashboard.panels() for t in p.targets]
    named = {r for e in exprs for r in re.findall(r"namespace_pod:\w+", e)}
    assert named <= records
    for name in set(metrics.DEFAULT_HPA_METRIC.values()):
        assert metrics.METRICS[name].record in named
    assert {t.source for p in triton_dashboard.panels() for t in p.targets} <= set(triton_dashboard.SOURCES)
    titles = " ".join(p.title for p in triton_dashboard.panels()).lower()
    for needed in (
        "requests per second",
        "queue time",
        "compute time",
        "time to first token",
        "gpu utilization",
        "gpu memory",
        "replicas",
        "hpa metric vs target",
    ):
        assert needed in titles


def test_dashboard_config_map_carries_the_sidecar_label_and_valid_json():
    cm = triton_dashboard.config_map_manifest("monitoring")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (body,) = cm["data"].values()
    model = yaml.safe_load(body)  # JSON is YAML
    assert model["uid"] == triton_dashboard.UID
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in model["panels"])


def test_dashboard_queries_parse_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    queries = triton_dashboard.panel_queries(triton_dashboard.dashboard())
    rules = [{"record": f"dashboard:q{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
