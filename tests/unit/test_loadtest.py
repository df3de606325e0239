"""`tritonllm loadtest`: its Job and ConfigMap against the Kubernetes schema, the load profile, the
HPA reading (from an autoscaling/v2 object the API server would accept) and the report.

The worker itself runs against the real local Triton in tests/e2e/test_loadtest_worker.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from components import config
from components.catalog import versions
from components.serving.builders.triton_manifests import hpa_manifest
from tests.k8s_schema import validate_k8s_object
from tritonllm import loadtest


def _objs(**overrides):
    args = dict(
        name="loadtest-llama-120000",
        namespace="llama",
        model="llama",
        url=loadtest.service_url("llama"),
        profile=loadtest.parse_profile("1,8", None, 60),
        max_tokens=64,
        image=versions.PYTHON_IMAGE,
        sources=loadtest.worker_sources(),
        prompts=["Hello there", "What is 2+2?"],
    )
    args.update(overrides)
    return loadtest.manifests(**args)


def test_manifests_are_valid_kubernetes_objects():
    for obj in _objs():
        validate_k8s_object(obj)
    for obj in _objs(prompts=None):
        validate_k8s_object(obj)


def test_job_runs_once_unprivileged_off_gpu_nodes_and_ends_after_the_profile():
    config_map, job = _objs()
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 2 * 60 + 600 + 300
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "tolerations" not in pod  # never lands on a tainted GPU node
    (container,) = pod["containers"]
    assert container["image"] == versions.PYTHON_IMAGE
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    cmd = container["command"]
    assert cmd[:3] == ["python", "-m", "tritonllm.loadtest_worker"]
    assert cmd[cmd.index("--url") + 1] == "http://triton.llama.svc.cluster.local:8000"
    assert cmd[cmd.index("--levels") + 1] == "1,8" and cmd[cmd.index("--level-seconds") + 1] == "60"


def test_config_map_mounts_the_worker_package_as_the_pod_sees_it(tmp_path):
    """Lay the ConfigMap out as the kubelet does (items key -> path) and run the worker's --help."""
    config_map, job = _objs()
    volume = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]
    assert volume["name"] == config_map["metadata"]["name"]
    for item in volume["items"]:
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config_map["data"][item["key"]])
    assert (tmp_path / "prompts.txt").read_text() == "Hello there\nWhat is 2+2?\n"
    # the image has no project dependencies: run with -I-like isolation, only the mounted code on the path
    result = subprocess.run(
        [sys.executable, "-S", "-m", "tritonllm.loadtest_worker", "--help"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--level-seconds" in result.stdout


@pytest.mark.parametrize(
    "steps, ramp, levels",
    [("1,8,32", None, (1, 8, 32)), (None, "1:64:5", (1, 17, 33, 48, 64)), (None, "4:4:2", (4, 4))],
)
def test_profiles(steps, ramp, levels):
    assert loadtest.parse_profile(steps, ramp, 30).levels == levels


@pytest.mark.parametrize(
    "steps, ramp, seconds, message",
    [
        (None, None, 60, "exactly one"),
        ("1,2", "1:2:2", 60, "exactly one"),
        ("1,x", None, 60, "--steps"),
        (None, "1:8", 60, "--ramp"),
        (None, "1:8:1", 60, "COUNT"),
        ("0,4", None, 60, "1..1024"),
        ("4", None, 5, "10 s"),
    ],
)
def test_bad_profiles_are_refused_with_the_flag(steps, ramp, seconds, message):
    with pytest.raises(ValueError, match=message):
        loadtest.parse_profile(steps, ramp, seconds)


def test_dry_run_prints_the_manifests(capsys):
    parser = __import__("argparse").ArgumentParser()
    loadtest.add_arguments(parser)
    assert loadtest.main(parser.parse_args(["--model", "llama", "--ramp", "1:16:3", "--dry-run"])) == 0
    import yaml

    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs if d] == ["ConfigMap", "Job"]


# --------------------------------------------------------------------------- HPA and report


def _hpa_with_status(current: str | None, replicas: int, desired: int) -> dict:
    raw = {
        "region": "us-west-2",
        "nodePools": [{"name": "g6e", "instanceFamilies": ["g6e"]}],
        "gateway": {"tls": {"plaintextInsideVpc": True}},
        "models": [
            {
                "name": "llama",
                "backend": "trtllm",
                "hfModelId": "org/m",
                "nodePool": "g6e",
                "engine": {"maxBatchSize": 64},
            }
        ],
    }
    hpa = hpa_manifest(config.parse_stack_config(raw).models[0])
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    status = {
        "currentReplicas": replicas,
        "desiredReplicas": desired,
        "conditions": [
            {
                "type": "ScalingActive",
                "status": "True" if current else "False",
                "reason": "ValidMetricFound" if current else "FailedGetPodsMetric",
                "lastTransitionTime": "2026-11-30T00:00:00Z",
            }
        ],
    }
    if current is not None:
        status["currentMetrics"] = [
            {"type": "Pods", "pods": {"metric": {"name": metric}, "current": {"averageValue": current}}}
        ]
    hpa["status"] = status
    validate_k8s_object(hpa)  # the shape the API server returns
    return hpa


def test_hpa_sample_reads_replicas_metric_and_target():
    sample = loadtest.hpa_sample(_hpa_with_status("40500m", 2, 3), 30.0)
    assert (sample.replicas, sample.desired, sample.metric) == (2, 3, "trtllm_active_requests")
    assert sample.value == pytest.approx(40.5) and sample.target == 32  # half the engine's batch of 64
    missing = loadtest.hpa_sample(_hpa_with_status(None, 1, 1), 40.0)
    assert missing.value is None and missing.conditions == ("ScalingActive=False (FailedGetPodsMetric)",)


@pytest.mark.parametrize("text, value", [("12500m", 12.5), ("3", 3.0), ("1.5k", 1500.0), ("2Ki", 2048.0)])
def test_quantities(text, value):
    assert loadtest.parse_quantity(text) == value


WORKER_LOG = "\n".join(
    [
        "some runtime warning",
        json.dumps({"event": "step", "step": 0, "concurrency": 1, "start": 0.0}),
        json.dumps(
            {
                "event": "request",
                "step": 0,
                "concurrency": 1,
                "start": 0.1,
                "ttft": 0.1,
                "latency": 1.0,
                "responses": 10,
                "ok": True,
            }
        ),
        json.dumps(
            {
                "event": "request",
                "step": 0,
                "concurrency": 1,
                "start": 1.1,
                "ttft": 0.3,
                "latency": 2.0,
                "responses": 20,
                "ok": True,
            }
        ),
        json.dumps({"event": "step", "step": 1, "concurrency": 2, "start": 10.0}),
        json.dumps(
            {
                "event": "request",
                "step": 1,
                "concurrency": 2,
                "start": 10.0,
                "ttft": None,
                "latency": 0.5,
                "responses": 0,
                "ok": False,
                "error": "HTTPError: 503",
            }
        ),
        "{not json",
        json.dumps({"event": "done", "elapsed": 20.0}),
    ]
)


def test_summary_per_level_hand_computed():
    rows = loadtest.summarize(loadtest.parse_worker_log(WORKER_LOG), step_seconds=10)
    assert rows[0] == {
        "step": 0,
        "concurrency": 1,
        "start_s": 0.0,
        "requests": 2,
        "errors": 0,
        "requests_per_s": 0.2,
        "responses_per_s": 3.0,
        "ttft_ms_p50": 100.0,
        "ttft_ms_p90": 300.0,
        "ttft_ms_p99": 300.0,
        "latency_ms_p50": 1000.0,
        "latency_ms_p90": 2000.0,
        "latency_ms_p99": 2000.0,
        "latency_ms_avg": 1500.0,
    }
    assert (rows[1]["requests"], rows[1]["errors"], rows[1]["requests_per_s"], rows[1]["latency_ms_p50"]) == (
        1,
        1,
        0,
        None,
    )
    report = loadtest.format_report(
        rows,
        [
            loadtest.hpa_sample(_hpa_with_status("1", 1, 1), 0),
            loadtest.hpa_sample(_hpa_with_status("1", 1, 1), 10),
            loadtest.hpa_sample(_hpa_with_status("40", 1, 2), 20),
        ],
    )
    assert "100/300/300" in report and "1000/2000/2000" in report
    assert report.count("\n     0 ") == 1 and "\n    10 " not in report  # unchanged samples are folded
    assert "    20        1       2     40.000" in report
