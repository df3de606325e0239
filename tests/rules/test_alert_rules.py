"""The serving alerts (components/observability/builders/alerts.py), unit-tested by the real promtool.

For every alert: series that fire it once its `for:` has passed, and series that must not (just under the
threshold, or not long enough, or the wrong kind of object). The input series carry the metric names and
labels the pinned exporters emit, each source cited where the series is built:

* Triton's own counters (`nv_inference_*`, label `model`), scraped through the model's PodMonitor
  (target labels namespace, pod, container, endpoint, job, instance), as tests/rules/test_recording_rules.py;
  vLLM's `vllm:time_to_first_token_seconds_{sum,count}` (vllm_backend r25.12 src/utils/metrics.py).
* kube-state-metrics v2.20.0 (what kube-prometheus-stack 88.5.3 deploys: chart 8.4.0, appVersion 2.20.0),
  docs/metrics/workload/*.md and internal/store/{pod,job}.go; scraped with honorLabels (the chart's
  kube-state-metrics.prometheus.monitor.honorLabels), so an object's `namespace`/`pod` labels win and a
  metric without `pod` gets kube-state-metrics' own pod as target label.
* Karpenter 1.14.1 core (sigs.k8s.io/karpenter 6e7eab7a0f48) pkg/cloudprovider/metrics/cloudprovider.go.
* dcgm-exporter 4.5.3-4.8.2 internal/pkg/rendermetrics/render_metrics.go (GPU labels) and
  internal/pkg/transformation/const.go (the GPU's pod: namespace, pod, container).

The expected annotations are the rules' own templates rendered here by substitution (labels from the
expected alert, `$value` spelled out per case): a template naming a label the alert does not carry fails
the substitution, and a wrong rendering fails promtool's comparison.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import MonitoringConfig, parse_stack_config
from components.observability.builders import alerts, metrics
from tests.rules.test_recording_rules import _promtool, _series
from tests.unit.test_config_checks import _raw_config
from tests.unit.test_config_errors import BadConfig

SCRAPE = "15s"
HOUR = "x240"  # 60 minutes of 15 s samples

# The models the rules are built for: a TensorRT-LLM LLM-API model and a vLLM model (llmapi stack), a
# multi-node TensorRT-LLM model (multinode stack, a LeaderWorkerSet), a second vLLM model (vllm stack).
TRT, MISTRAL, GROUP, CHAT = "llama-3-2-1b", "mistral-7b-instruct", "llama-3-8b", "llama-2-7b-chat"
MISTRAL_TTFT_TARGET_MS = 5000  # per-model override; CHAT keeps the stack-wide 3000 ms


def _models() -> list:
    models = []
    for stack, wanted in (("llmapi", (TRT, MISTRAL)), ("multinode", (GROUP,)), ("vllm", (CHAT,))):
        cfg = parse_stack_config(_raw_config(BadConfig("ok", stack, {}, "", "")), {"hfToken"})
        models += [m for m in cfg.models if m.name in wanted]
    assert sorted(m.name for m in models) == sorted((TRT, MISTRAL, GROUP, CHAT))
    return models


def _monitoring() -> MonitoringConfig:
    return MonitoringConfig.model_validate(
        {"scrapeInterval": SCRAPE, "alerts": {"models": {MISTRAL: {"ttftMs": MISTRAL_TTFT_TARGET_MS}}}}
    )


def rule_groups() -> list[dict[str, Any]]:
    """Recording rules (the alerts read their records) and the alert group, as one rule file."""
    return metrics.rule_groups(SCRAPE) + alerts.alert_rule_groups(_monitoring(), _models())


def _rules_by_name() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                found.setdefault(rule["alert"], []).append(rule)
    return found


# --------------------------------------------------------------------------- the exporters' series

TRITON_TARGET = {"container": "triton", "endpoint": "metrics", "version": "1"}
KSM_TARGET = {"job": "kube-state-metrics", "instance": "10.0.1.5:8080", "endpoint": "http"}
KSM_POD = {"pod": "kps-kube-state-metrics-7d9c-x2x9z", "container": "kube-state-metrics"}
KARPENTER_TARGET = {
    "job": "karpenter",
    "namespace": "kube-system",
    "pod": "karpenter-6c9-abcde",
    "instance": "10.0.2.7:8080",
}
DCGM_TARGET = {"job": "dcgm-exporter", "instance": "10.0.3.9:9400", "DCGM_FI_DRIVER_VERSION": "570.172.08"}


def _triton(namespace: str, pod: str, model: str) -> dict[str, str]:
    return {
        **TRITON_TARGET,
        "namespace": namespace,
        "pod": pod,
        "model": model,
        "job": f"{namespace}/{namespace}-triton",
    }


def _gpu(gpu: str, uuid: str, namespace: str, pod: str) -> dict[str, str]:
    # render_metrics.go: gpu, UUID, pci_bus_id, device, modelName, Hostname; const.go: namespace, pod, container
    return {
        **DCGM_TARGET,
        "gpu": gpu,
        "UUID": uuid,
        "pci_bus_id": f"00000000:00:1{gpu}.0",
        "device": f"nvidia{gpu}",
        "modelName": "NVIDIA L40S",
        "Hostname": "ip-10-1-7-21.us-west-2.compute.internal",
        "namespace": namespace,
        "pod": pod,
        "container": "triton",
    }


def main_series() -> list[dict[str, str]]:
    """One hour of a cluster where each alert has a case that fires and one that must not."""
    s: list[dict[str, str]] = []
    # --- no ready replica (kube-state-metrics deployment/statefulset metrics); created 1 h before the test
    s += [
        _series(
            "kube_deployment_status_replicas_available",
            {**KSM_TARGET, **KSM_POD, "namespace": TRT, "deployment": "triton"},
            f"0{HOUR}",
        ),
        _series(
            "kube_deployment_created",
            {**KSM_TARGET, **KSM_POD, "namespace": TRT, "deployment": "triton"},
            f"-3600{HOUR}",
        ),
        _series(
            "kube_deployment_status_replicas_available",
            {**KSM_TARGET, **KSM_POD, "namespace": MISTRAL, "deployment": "triton"},
            f"1{HOUR}",
        ),
        _series(
            "kube_deployment_created",
            {**KSM_TARGET, **KSM_POD, "namespace": MISTRAL, "deployment": "triton"},
            f"-3600{HOUR}",
        ),
        # a StatefulSet that is not a model's (another namespace): never alerts
        _series(
            "kube_statefulset_status_replicas_ready",
            {**KSM_TARGET, **KSM_POD, "namespace": "monitoring", "statefulset": "alertmanager-kps-alertmanager"},
            f"0{HOUR}",
        ),
        _series(
            "kube_statefulset_created",
            {**KSM_TARGET, **KSM_POD, "namespace": "monitoring", "statefulset": "alertmanager-kps-alertmanager"},
            f"-3600{HOUR}",
        ),
        # the LeaderWorkerSet's leader StatefulSet (named after the LWS, lws v0.10.0)
        _series(
            "kube_statefulset_status_replicas_ready",
            {**KSM_TARGET, **KSM_POD, "namespace": GROUP, "statefulset": "triton-mn"},
            f"0{HOUR}",
        ),
        _series(
            "kube_statefulset_created",
            {**KSM_TARGET, **KSM_POD, "namespace": GROUP, "statefulset": "triton-mn"},
            f"-3600{HOUR}",
        ),
    ]
    # --- requests per 15 s step at each model's served model (the records' inputs)
    trt, mistral, group, chat = (
        _triton(TRT, "triton-5f6b-aaaaa", TRT),
        _triton(MISTRAL, "triton-7c8d-bbbbb", MISTRAL),
        _triton(GROUP, "triton-mn-0", "ensemble"),
        _triton(CHAT, "triton-9e0f-ccccc", CHAT),
    )
    s += [
        # TRT: 10% of requests fail (fires at 5%); queue 1.5 s per request (target 1000 ms: fires)
        _series("nv_inference_request_success", trt, f"0+0.9{HOUR}"),
        _series("nv_inference_request_failure", {**trt, "reason": "BACKEND"}, f"0+0.1{HOUR}"),
        _series("nv_inference_queue_duration_us", trt, f"0+1350000{HOUR}"),  # 0.9 x 1.5e6 us
        # MISTRAL: 4% fail, just under 5%; time to first token 4 s against its 5000 ms override
        _series("nv_inference_request_success", mistral, f"0+0.96{HOUR}"),
        _series("nv_inference_request_failure", {**mistral, "reason": "BACKEND"}, f"0+0.04{HOUR}"),
        _series("vllm:time_to_first_token_seconds_count", mistral, f"0+1{HOUR}"),
        _series("vllm:time_to_first_token_seconds_sum", mistral, f"0+4{HOUR}"),
        # GROUP: queue 0.9 s per request, just under 1000 ms; no failures
        _series("nv_inference_request_success", group, f"0+0.5{HOUR}"),
        _series("nv_inference_request_failure", {**group, "reason": "BACKEND"}, f"0{HOUR}"),
        _series("nv_inference_queue_duration_us", group, f"0+450000{HOUR}"),
        # CHAT: time to first token 4 s against the stack-wide 3000 ms
        _series("nv_inference_request_success", chat, f"0+1{HOUR}"),
        _series("vllm:time_to_first_token_seconds_count", chat, f"0+1{HOUR}"),
        _series("vllm:time_to_first_token_seconds_sum", chat, f"0+4{HOUR}"),
    ]
    # --- HPAs (kube-state-metrics horizontalpodautoscaler metrics)
    for namespace, current, maximum in ((TRT, 4, 4), (MISTRAL, 3, 4)):
        hpa = {**KSM_TARGET, **KSM_POD, "namespace": namespace, "horizontalpodautoscaler": "triton"}
        s += [
            _series("kube_horizontalpodautoscaler_status_current_replicas", hpa, f"{current}{HOUR}"),
            _series("kube_horizontalpodautoscaler_spec_max_replicas", hpa, f"{maximum}{HOUR}"),
        ]
    # --- pods waiting for a node (kube_pod_status_unschedulable: 1 while PodScheduled is False; GPU
    # requests as kube-state-metrics sanitises nvidia.com/gpu; init containers in their own metric)
    waiting = [
        ("triton-7c8d-ddddd", MISTRAL, "kube_pod_container_resource_requests", "triton", "nvidia_com_gpu"),
        (
            "engine-build-0123456789abcdef-x1y2z",
            TRT,
            "kube_pod_init_container_resource_requests",
            "build",
            "nvidia_com_gpu",
        ),
        ("kps-grafana-5b7c9-abcde", "monitoring", "kube_pod_container_resource_requests", "grafana", "cpu"),
    ]
    for pod, namespace, metric, container, resource in waiting:
        labels = {**KSM_TARGET, "namespace": namespace, "pod": pod, "uid": f"uid-{pod}"}
        s.append(_series("kube_pod_status_unschedulable", labels, f"1{HOUR}"))
        unit = "integer" if resource == "nvidia_com_gpu" else "core"
        s.append(
            _series(
                metric,
                {
                    **KSM_TARGET,
                    "namespace": namespace,
                    "pod": pod,
                    "uid": f"uid-{pod}",
                    "container": container,
                    "node": "",
                    "resource": resource,
                    "unit": unit,
                },
                f"1{HOUR}",
            )
        )
    # a running GPU pod (scheduled: no unschedulable series)
    s.append(
        _series(
            "kube_pod_container_resource_requests",
            {
                **KSM_TARGET,
                "namespace": CHAT,
                "pod": "triton-9e0f-ccccc",
                "uid": "u1",
                "container": "triton",
                "node": "ip-10-1-7-21",
                "resource": "nvidia_com_gpu",
                "unit": "integer",
            },
            f"1{HOUR}",
        )
    )
    # --- Karpenter: node launches failing with insufficient capacity, a Delete error that is not a launch
    cloudprovider = {**KARPENTER_TARGET, "controller": "nodeclaim.lifecycle", "provider": "aws"}
    s += [
        _series(
            "karpenter_cloudprovider_errors_total",
            {**cloudprovider, "method": "Create", "error": "InsufficientCapacityError"},
            f"1+0.1{HOUR}",
        ),
        _series(
            "karpenter_cloudprovider_errors_total",
            {**cloudprovider, "controller": "nodeclaim.termination", "method": "Delete", "error": ""},
            f"1+0.1{HOUR}",
        ),
    ]
    # --- DCGM: GPU 0 reports XID 79 from minute 10 and runs 98% full; GPU 1 no XID and 90% full
    gpu0, gpu1 = _gpu("0", "GPU-0aa1", TRT, "triton-5f6b-aaaaa"), _gpu("1", "GPU-1bb2", CHAT, "triton-9e0f-ccccc")
    s += [
        _series("DCGM_FI_DEV_XID_ERRORS", gpu0, "0x40 79x200"),
        _series("DCGM_FI_DEV_XID_ERRORS", gpu1, f"0{HOUR}"),
        _series("DCGM_FI_DEV_FB_USED", gpu0, f"49{HOUR}"),
        _series("DCGM_FI_DEV_FB_FREE", gpu0, f"1{HOUR}"),
        _series("DCGM_FI_DEV_FB_USED", gpu1, f"45{HOUR}"),
        _series("DCGM_FI_DEV_FB_FREE", gpu1, f"5{HOUR}"),
    ]
    # --- Jobs (kube_job_status_failed: one series per known reason once the Job failed, job.go)
    for job, namespace, failed_reason in (
        ("engine-build-0123456789abcdef", TRT, "BackoffLimitExceeded"),
        ("loadtest-3f2a", CHAT, "BackoffLimitExceeded"),
    ):
        for reason in ("BackoffLimitExceeded", "DeadlineExceeded", "Evicted"):
            value = "0x20 1x220" if reason == failed_reason else f"0{HOUR}"
            s.append(
                _series(
                    "kube_job_status_failed",
                    {**KSM_TARGET, **KSM_POD, "namespace": namespace, "job_name": job, "reason": reason},
                    value,
                )
            )
    s.append(
        _series(
            "kube_job_status_failed",
            {**KSM_TARGET, **KSM_POD, "namespace": GROUP, "job_name": "engine-build-fedcba9876543210", "reason": ""},
            f"0{HOUR}",
        )
    )
    return s


def quiet_series() -> list[dict[str, str]]:
    """A second cluster: a Deployment younger than the cold-start budget, and Karpenter errors while no
    GPU pod waits."""
    deployment = {**KSM_TARGET, **KSM_POD, "namespace": TRT, "deployment": "triton"}
    cloudprovider = {**KARPENTER_TARGET, "controller": "nodeclaim.lifecycle", "provider": "aws", "method": "Create"}
    return [
        _series("kube_deployment_status_replicas_available", deployment, f"0{HOUR}"),
        _series("kube_deployment_created", deployment, f"120{HOUR}"),  # created at minute 2
        _series(
            "karpenter_cloudprovider_errors_total",
            {**cloudprovider, "error": "InsufficientCapacityError"},
            f"1+0.1{HOUR}",
        ),
    ]


# --------------------------------------------------------------------------- expectations


def _expected(name: str, labels: dict[str, str], values: dict[str, str]) -> dict[str, Any]:
    """The alert `name` with `labels` (besides severity), its annotations rendered from the rule."""
    (rule,) = _rules_by_name()[name]
    full = {**labels, "severity": rule["labels"]["severity"]}

    def render(template: str) -> str:
        def one(match: re.Match) -> str:
            expr = match.group(1).strip()
            if expr.startswith("$labels."):
                return full[expr.removeprefix("$labels.")]  # KeyError: the template names a label the alert lacks
            return values[expr]

        return re.sub(r"\{\{(.*?)\}\}", one, template)

    return {"exp_labels": full, "exp_annotations": {k: render(v) for k, v in rule["annotations"].items()}}


def alert_tests() -> list[dict[str, Any]]:
    """(main cluster) alert_rule_test entries: each alert after its `for:`, and before it where it has one."""
    trt_pod, chat_pod = "triton-5f6b-aaaaa", "triton-9e0f-ccccc"
    gpu = {"Hostname": "ip-10-1-7-21.us-west-2.compute.internal", "modelName": "NVIDIA L40S"}
    cases: list[tuple[str, str, list[dict[str, Any]]]] = [
        # unavailable 5m: a Deployment and the LWS leader fire; MISTRAL (1 available) and the monitoring
        # StatefulSet do not
        ("4m", alerts.MODEL_UNAVAILABLE, []),
        (
            "6m",
            alerts.MODEL_UNAVAILABLE,
            [
                _expected(alerts.MODEL_UNAVAILABLE, {"namespace": TRT, "deployment": "triton"}, {}),
                _expected(
                    alerts.MODEL_UNAVAILABLE,
                    {"namespace": GROUP, "statefulset": "triton-mn"},
                    {},
                ),
            ],
        ),
        # failure ratio 5% for 5m: TRT's 10% fires, MISTRAL's 4% does not
        ("5m", alerts.MODEL_FAILING, []),
        (
            "10m",
            alerts.MODEL_FAILING,
            [_expected(alerts.MODEL_FAILING, {"namespace": TRT}, {"$value | humanizePercentage": "10%"})],
        ),
        # latency for 10m: CHAT's 4 s TTFT over 3000 ms fires, MISTRAL's under its 5000 ms override does not;
        # TRT's 1.5 s queue fires, GROUP's 0.9 s does not
        ("10m", alerts.MODEL_SLOW_FIRST_TOKEN, []),
        (
            "12m",
            alerts.MODEL_SLOW_FIRST_TOKEN,
            [
                _expected(
                    alerts.MODEL_SLOW_FIRST_TOKEN,
                    {"namespace": CHAT, "pod": chat_pod, "target_ms": "3000"},
                    {"$value | humanize": "4k"},
                )
            ],
        ),
        ("10m", alerts.MODEL_QUEUE_TIME, []),
        (
            "12m",
            alerts.MODEL_QUEUE_TIME,
            [
                _expected(
                    alerts.MODEL_QUEUE_TIME,
                    {"namespace": TRT, "pod": trt_pod, "target_ms": "1000"},
                    {"$value | humanize": "1.5k"},
                )
            ],
        ),
        # HPA at max for 15m: TRT (4 of 4), not MISTRAL (3 of 4)
        ("14m", alerts.MODEL_HPA_MAXED, []),
        (
            "16m",
            alerts.MODEL_HPA_MAXED,
            [
                _expected(
                    alerts.MODEL_HPA_MAXED,
                    {"namespace": TRT, "horizontalpodautoscaler": "triton"},
                    {"$value": "4"},
                )
            ],
        ),
        # GPU pods unscheduled for 15m: the Triton pod and the engine build (GPU in its init container),
        # not Grafana (no GPU) nor the running CHAT pod
        ("14m", alerts.GPU_POD_UNSCHEDULABLE, []),
        (
            "16m",
            alerts.GPU_POD_UNSCHEDULABLE,
            [
                _expected(
                    alerts.GPU_POD_UNSCHEDULABLE, {"namespace": TRT, "pod": "engine-build-0123456789abcdef-x1y2z"}, {}
                ),
                _expected(alerts.GPU_POD_UNSCHEDULABLE, {"namespace": MISTRAL, "pod": "triton-7c8d-ddddd"}, {}),
            ],
        ),
        # Karpenter launch errors while GPU pods wait, for 5m: one alert per error kind, Create only
        ("4m", alerts.KARPENTER_LAUNCH_FAILING, []),
        (
            "7m",
            alerts.KARPENTER_LAUNCH_FAILING,
            [_expected(alerts.KARPENTER_LAUNCH_FAILING, {"error": "InsufficientCapacityError"}, {})],
        ),
        # XID 79 on GPU 0 from minute 10 (no for:), none on GPU 1
        ("9m", alerts.GPU_XID, []),
        (
            "11m",
            alerts.GPU_XID,
            [
                _expected(
                    alerts.GPU_XID,
                    {**gpu, "gpu": "0", "UUID": "GPU-0aa1", "namespace": TRT, "pod": trt_pod},
                    {"$value": "79"},
                )
            ],
        ),
        # GPU memory 98% for 15m on GPU 0 (target 97%); GPU 1 at 90% never
        ("14m", alerts.GPU_MEMORY_FULL, []),
        (
            "16m",
            alerts.GPU_MEMORY_FULL,
            [
                _expected(
                    alerts.GPU_MEMORY_FULL,
                    {**gpu, "gpu": "0", "UUID": "GPU-0aa1", "namespace": TRT, "pod": trt_pod},
                    {"$value | humanizePercentage": "98%"},
                )
            ],
        ),
        # the engine build Job failed at minute 5; a failed Job of another name and an engine build with
        # no failure do not alert
        ("4m", alerts.ENGINE_BUILD_FAILED, []),
        (
            "6m",
            alerts.ENGINE_BUILD_FAILED,
            [
                _expected(
                    alerts.ENGINE_BUILD_FAILED, {"namespace": TRT, "job_name": "engine-build-0123456789abcdef"}, {}
                )
            ],
        ),
    ]
    return [{"eval_time": at, "alertname": name, "exp_alerts": exp} for at, name, exp in cases]


def quiet_tests() -> list[dict[str, Any]]:
    deployment = {"namespace": TRT, "deployment": "triton"}
    return [
        # created at minute 2: not counted within the 40 min cold-start budget, counted after it
        {"eval_time": "30m", "alertname": alerts.MODEL_UNAVAILABLE, "exp_alerts": []},
        {
            "eval_time": "50m",
            "alertname": alerts.MODEL_UNAVAILABLE,
            "exp_alerts": [_expected(alerts.MODEL_UNAVAILABLE, deployment, {})],
        },
        # launch errors but no GPU pod waiting
        {"eval_time": "30m", "alertname": alerts.KARPENTER_LAUNCH_FAILING, "exp_alerts": []},
    ]


def _test_file(rule_file: Path) -> dict[str, Any]:
    return {
        "rule_files": [str(rule_file)],
        "evaluation_interval": SCRAPE,
        "tests": [
            {"interval": SCRAPE, "input_series": main_series(), "alert_rule_test": alert_tests()},
            {"interval": SCRAPE, "input_series": quiet_series(), "alert_rule_test": quiet_tests()},
        ],
    }


def _run_promtool_tests(data: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "alert-tests.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("alert-rules") / "tritonllm-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}))
    return path


# --------------------------------------------------------------------------- tests


def test_promtool_check_rules_accepts_the_alerts(rule_file):
    result = subprocess.run([_promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in rule_groups())
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_every_alert_fires_and_has_a_case_that_must_not(rule_file):
    """Each alert name is tested at least twice: once firing, once with none of its alerts expected."""
    names = set(_rules_by_name())
    assert names == {
        alerts.MODEL_UNAVAILABLE,
        alerts.MODEL_FAILING,
        alerts.MODEL_SLOW_FIRST_TOKEN,
        alerts.MODEL_QUEUE_TIME,
        alerts.MODEL_HPA_MAXED,
        alerts.GPU_POD_UNSCHEDULABLE,
        alerts.KARPENTER_LAUNCH_FAILING,
        alerts.GPU_XID,
        alerts.GPU_MEMORY_FULL,
        alerts.ENGINE_BUILD_FAILED,
    }
    cases = alert_tests() + quiet_tests()
    for name in names:
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never fires in the tests"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} has no quiet case"


def test_promtool_test_rules_fires_exactly_the_expected_alerts(rule_file, tmp_path):
    result = _run_promtool_tests(_test_file(rule_file), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    "mutate, why",
    [
        (lambda s: [x for x in s if "kube_pod_init_container_resource_requests" not in x["series"]], "init"),
        (lambda s: [{**x, "series": x["series"].replace("nvidia_com_gpu", "nvidia.com/gpu")} for x in s], "gpu"),
    ],
    ids=["no-init-container-requests", "unsanitised-resource-name"],
)
def test_promtool_catches_series_the_rules_do_not_expect(rule_file, tmp_path, mutate, why):
    """The harness can fail: the same expectations over changed input series are rejected."""
    data = copy.deepcopy(_test_file(rule_file))
    data["tests"][0]["input_series"] = mutate(data["tests"][0]["input_series"])
    result = _run_promtool_tests(data, tmp_path)
    assert result.returncode != 0, why
    assert alerts.GPU_POD_UNSCHEDULABLE in result.stdout + result.stderr


def test_model_alerts_name_the_model_and_say_what_to_do():
    for name, rules in _rules_by_name().items():
        for rule in rules:
            summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
            if name.startswith("Triton"):
                assert "{{ $labels.namespace }}" in summary, (name, summary)  # a model's namespace is its name
            assert rule["labels"]["severity"] in ("critical", "warning")
            assert any(verb in description for verb in ("kubectl", "pulumi up", "Raise", "raise")), (name, description)


def test_thresholds_and_durations_come_from_config():
    monitoring = MonitoringConfig.model_validate(
        {
            "alerts": {
                "failureRatio": 0.2,
                "failureFor": "7m",
                "ttftMs": 1234,
                "queueTimeMs": 567,
                "latencyFor": "3m",
                "unavailableFor": "9m",
                "hpaMaxedFor": "21m",
                "gpuPendingFor": "33m",
                "gpuMemoryUsedRatio": 0.99,
            }
        }
    )
    rules = {r["alert"]: r for r in alerts.alert_rule_groups(monitoring, _models())[0]["rules"]}
    assert rules[alerts.MODEL_FAILING]["expr"].endswith("> 0.2") and rules[alerts.MODEL_FAILING]["for"] == "7m"
    assert (
        "> 1234" in rules[alerts.MODEL_SLOW_FIRST_TOKEN]["expr"] and rules[alerts.MODEL_SLOW_FIRST_TOKEN]["for"] == "3m"
    )
    assert "> 567" in rules[alerts.MODEL_QUEUE_TIME]["expr"]
    assert rules[alerts.MODEL_UNAVAILABLE]["for"] == "9m"
    assert rules[alerts.MODEL_HPA_MAXED]["for"] == "21m"
    assert rules[alerts.GPU_POD_UNSCHEDULABLE]["for"] == "33m"
    assert rules[alerts.GPU_MEMORY_FULL]["expr"].endswith("> 0.99")


def test_without_the_dcgm_exporter_there_are_no_gpu_alerts_and_a_pinned_hpa_has_none():
    monitoring = MonitoringConfig.model_validate({"dcgmExporter": False})
    models = [m.model_copy(update={"min_replicas": 2, "max_replicas": 2}) for m in _models()]
    names = {r["alert"] for r in alerts.alert_rule_groups(monitoring, models)[0]["rules"]}
    assert alerts.GPU_XID not in names and alerts.GPU_MEMORY_FULL not in names
    assert alerts.MODEL_HPA_MAXED not in names  # minReplicas == maxReplicas: always "at max"
