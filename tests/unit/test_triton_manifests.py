"""TritonLLM's pure builders: Deployment, Service, HPA, PDB, PodMonitor, routes, commands."""

from __future__ import annotations

import base64
import json

import pytest

from components.catalog import versions
from components.config import StackConfig, parse_stack_config
from components.observability.builders import metrics
from components.serving.builders import engine_build
from components.serving.builders import triton_manifests as tm
from tests.k8s_schema import validate_k8s_object, validate_manifest
from tests.unit.harness import load_stack_config
from tests.weights_helpers import deployment_manifest

KEY = "0123456789abcdef" * 4


def stack_config(stack: str, **model_overrides) -> StackConfig:
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(stack).items() if k.startswith("tritonllm:")}
    if model_overrides:
        raw["models"] = [{**raw["models"][0], **model_overrides}, *raw["models"][1:]]
    return parse_stack_config(raw, {"hfToken"})


@pytest.fixture(scope="module")
def dev():
    cfg = stack_config("dev")
    return cfg.models[0], cfg


@pytest.fixture(scope="module")
def vllm():
    cfg = stack_config("vllm")
    return cfg.models[0], cfg


def pod_spec(manifest):
    return manifest["spec"]["template"]["spec"]


def container(manifest, name="triton"):
    return next(c for c in pod_spec(manifest)["containers"] if c["name"] == name)


def test_vllm_deployment_loads_from_s3_with_the_weights_staged_from_the_mirror(vllm):
    model, cfg = vllm
    manifest = deployment_manifest(model, cfg.site_of(model), bucket="models-b", shared_claim_name=tm.SHARED_CLAIM)
    validate_k8s_object(manifest)
    triton = container(manifest)
    assert triton["image"] == versions.TRITON_VLLM_IMAGE
    assert triton["command"][0] == "tritonserver"
    assert "--model-repository=s3://models-b/models/llama-2-7b-chat" in triton["command"]
    # Explicit control with the one model loaded: the vLLM health check only unloads a dead engine's
    # model in this mode (vllm_backend r25.12 docs/health_check.md).
    assert "--model-control-mode=explicit" in triton["command"]
    assert "--load-model=llama-2-7b-chat" in triton["command"]
    assert not any(a.startswith("--model-control-mode=none") for a in triton["command"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert triton[probe]["httpGet"]["path"] == "/v2/models/llama-2-7b-chat/ready", probe
    env = {e["name"]: e for e in triton["env"]}
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-west-2"  # Triton's S3 client reads the region from it
    # No Hugging Face token and no download: the weights come from the mirror (tests/unit/test_weights_mirror.py).
    assert not {"HF_TOKEN", "HF_TOKEN_PATH", "HF_HOME"} & set(env)
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    volumes = {v["name"]: v for v in pod_spec(manifest)["volumes"]}
    assert volumes[tm.WEIGHTS_VOLUME] == {"name": tm.WEIGHTS_VOLUME, "emptyDir": {}}  # node-local, not EFS
    # then the shared compile cache (tests/unit/test_compile_cache.py): restore, and the saving native sidecar
    assert [c["name"] for c in pod_spec(manifest)["initContainers"]] == [
        "stage-weights",
        "restore-compile-cache",
        "save-compile-cache",
    ]


def test_trtllm_deployment_stages_the_engine_before_triton_starts(dev):
    model, cfg = dev
    manifest = deployment_manifest(model, cfg.site_of(model), bucket="models-b", engine_key=KEY)
    validate_k8s_object(manifest)
    stage = pod_spec(manifest)["initContainers"][0]
    assert stage["image"] == versions.AWS_CLI_IMAGE
    script = stage["command"][-1]
    assert f"s3api head-object --bucket models-b --key engines/{KEY}/_COMPLETE" in script
    assert f"aws s3 sync s3://models-b/engines/{KEY}/ /staged/" in script
    triton = container(manifest)
    assert triton["image"] == versions.TRITON_TRTLLM_ENGINE_IMAGE
    assert triton["command"][:2] == ["tritonserver", "--model-repository=/staged/model_repository"]
    assert {"name": "engine", "mountPath": "/staged"} in triton["volumeMounts"]
    assert {"name": "engine", "emptyDir": {}} in pod_spec(manifest)["volumes"]
    assert manifest["spec"]["template"]["metadata"]["annotations"]["tritonllm.io/engine-key"] == KEY


def test_trtllm_on_efs_stages_once_per_key_on_the_shared_claim():
    cfg = stack_config("dev", engineStorage="efs")
    model = cfg.models[0]
    manifest = deployment_manifest(
        model, cfg.site_of(model), bucket="b", engine_key=KEY, shared_claim_name=tm.SHARED_CLAIM
    )
    validate_k8s_object(manifest)
    mount = next(m for m in container(manifest)["volumeMounts"] if m["name"] == "engine")
    assert mount["subPath"] == f"engines/{KEY}"
    with pytest.raises(ValueError, match="EFS is disabled"):
        deployment_manifest(model, cfg.site_of(model), bucket="b", engine_key=KEY, shared_claim_name=None)


def test_trtllm_needs_its_engine_key(dev):
    model, cfg = dev
    with pytest.raises(ValueError, match="engine key"):
        deployment_manifest(model, cfg.site_of(model), bucket="b")


def test_pods_carry_the_monitoring_labels_ports_gpus_and_scheduling(dev):
    model, cfg = dev
    manifest = deployment_manifest(model, cfg.site_of(model), bucket="b", engine_key=KEY)
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": model.name,
        "tritonllm.io/model": model.name,
    }.items() <= labels.items()
    assert manifest["spec"]["selector"]["matchLabels"] == metrics.pod_selector_labels(model.name)
    triton = container(manifest)
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    spec = pod_spec(manifest)
    assert spec["nodeSelector"] == {"karpenter.sh/nodepool": "g6e"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in spec["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in triton["volumeMounts"]
    assert spec["serviceAccountName"] == tm.SERVICE_ACCOUNT


def test_probes_give_a_cold_start_tens_of_minutes(dev):
    model, cfg = dev
    triton = container(deployment_manifest(model, cfg.site_of(model), bucket="b", engine_key=KEY))
    startup = triton["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_ngc_pull_secret_is_used_when_given(dev):
    model, cfg = dev
    manifest = deployment_manifest(
        model, cfg.site_of(model), bucket="b", engine_key=KEY, image_pull_secret=tm.IMAGE_PULL_SECRET
    )
    assert pod_spec(manifest)["imagePullSecrets"] == [{"name": tm.IMAGE_PULL_SECRET}]
    config = json.loads(tm.dockerconfigjson("nvapi-KEY"))
    auth = config["auths"]["nvcr.io"]
    assert auth["username"] == "$oauthtoken" and auth["password"] == "nvapi-KEY"
    assert base64.b64decode(auth["auth"]).decode() == "$oauthtoken:nvapi-KEY"


def test_multi_gpu_trtllm_runs_one_tritonserver_per_rank_under_mpi():
    cfg = stack_config("dev", tensorParallel=2, maxReplicas=4)
    command = tm.triton_command(cfg.models[0], "b")
    assert command[:2] == ["mpirun", "--allow-run-as-root"]
    assert command.count("tritonserver") == 2 and command.count(":") == 1
    rank1 = command[command.index(":") + 1 :]
    assert "--model-control-mode=explicit" in rank1 and "--load-model=tensorrt_llm" in rank1
    assert "--backend-config=python,shm-region-prefix-name=prefix1_" in rank1


def test_service_exposes_the_three_ports_by_name(dev):
    model, _ = dev
    service = tm.service_manifest(model)
    validate_k8s_object(service)
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    assert service["spec"]["selector"] == metrics.pod_selector_labels(model.name)


@pytest.mark.parametrize("stack", ["dev", "vllm"])
def test_hpa_scales_on_a_metric_the_adapter_exposes(stack):
    cfg = stack_config(stack)
    exposed = {rule["name"]["as"] for rule in metrics.adapter_rules()}
    for model in cfg.models:
        hpa = tm.hpa_manifest(model)
        validate_k8s_object(hpa)
        metric = hpa["spec"]["metrics"][0]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] in exposed
        assert metric["pods"]["target"]["type"] == "AverageValue"
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == model.autoscaling.scale_down_stabilization_seconds
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == model.autoscaling.scale_up_stabilization_seconds
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (model.min_replicas, model.max_replicas)
        assert hpa["spec"]["scaleTargetRef"]["name"] == tm.DEPLOYMENT_NAME


def test_pod_monitor_selects_the_triton_pods_and_their_metrics_port(dev):
    model, cfg = dev
    monitor = tm.pod_monitor_manifest(model, cfg.site_of(model))
    validate_manifest(monitor)
    pod_labels = deployment_manifest(model, cfg.site_of(model), bucket="b", engine_key=KEY)["spec"]["template"][
        "metadata"
    ]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {
        p["name"]
        for p in container(deployment_manifest(model, cfg.site_of(model), bucket="b", engine_key=KEY))["ports"]
    }
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    assert monitor["metadata"]["namespace"] == model.name


def test_pdb_never_blocks_a_single_replica_drain(dev):
    model, _ = dev
    pdb = tm.pdb_manifest(model)
    validate_k8s_object(pdb)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": metrics.pod_selector_labels(model.name)}}


def test_routes_send_the_model_to_its_service(dev):
    model, _ = dev
    http, grpc = tm.route_manifests(model, "tritonllm", "nginx-gateway")
    for route in (http, grpc):
        validate_manifest(route)
        assert route["metadata"]["namespace"] == model.name
        assert {b["name"] for r in route["spec"]["rules"] for b in r["backendRefs"]} == {tm.SERVICE_NAME}
    assert {b["port"] for r in http["spec"]["rules"] for b in r["backendRefs"]} == {8000}
    assert {b["port"] for r in grpc["spec"]["rules"] for b in r["backendRefs"]} == {8001}


def test_small_objects_validate(dev):
    model, cfg = dev
    for manifest in (
        tm.namespace_manifest(model, {"tritonllm.io/gateway-routes": "allowed"}),
        tm.service_account_manifest(model),
        tm.image_pull_secret_manifest(model),
        tm.shared_claim(model, cfg.site_of(model), "efs-sc"),
    ):
        validate_k8s_object(manifest)
    assert tm.namespace_manifest(model)["metadata"]["name"] == model.name


def test_client_command_is_the_exact_call(dev):
    model, _ = dev
    command = tm.client_command(model, "k8s-nlb.elb.us-west-2.amazonaws.com:8001")
    assert command == (
        "python -m tritonllm client --url k8s-nlb.elb.us-west-2.amazonaws.com:8001 --protocol grpc "
        "--model-name llama-3-2-1b --input-prompts prompts.txt --results-file results/llama-3-2-1b.txt"
    )


def test_client_command_flags_exist_in_the_client():
    import argparse

    from tritonllm import client

    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    import shlex

    argv = shlex.split(tm.client_command(stack_config("vllm").models[1], "host:8001"))[4:]
    args = parser.parse_args(argv)
    assert (args.url, args.protocol, args.model_name) == ("host:8001", "grpc", "mistral-7b-instruct")


def test_engine_stage_paths_match_the_build():
    assert tm.STAGE_DIR == engine_build.STAGE_DIR
    assert tm.TRTLLM_REPOSITORY == f"{engine_build.STAGE_DIR}/model_repository"


def test_vllm_readers_may_check_the_bucket_but_read_only_their_prefix(vllm, dev):
    vllm_model, _ = vllm
    policy = tm.triton_reader_policy(vllm_model, "arn:aws:s3:::b", "models/llama-2-7b-chat")
    head = [s for s in policy["Statement"] if s.get("Sid") == "TritonHeadBucket"]
    assert head == [
        {
            "Sid": "TritonHeadBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::b"],
            "Condition": {"Null": {"s3:prefix": "true"}},
        }
    ]
    gets = [s for s in policy["Statement"] if "s3:GetObject" in s["Action"]]
    assert [s["Resource"] for s in gets] == [["arn:aws:s3:::b/models/llama-2-7b-chat/*"]]
    trt_model, _ = dev
    assert not [
        s
        for s in tm.triton_reader_policy(trt_model, "arn:aws:s3:::b", "engines/k")["Statement"]
        if s.get("Sid") == "TritonHeadBucket"
    ]
    assert tm.uses_irsa(vllm_model) and not tm.uses_irsa(trt_model)
    # OpenAI mode: tritonserver reads a staged copy, only the init container's `aws s3 sync` reads S3
    # (ListBucket with the prefix, GetObject): no HeadBucket statement.
    openai_model = stack_config("vllm", openai={"enabled": True}).models[0]
    assert not [
        s
        for s in tm.triton_reader_policy(openai_model, "arn:aws:s3:::b", "models/llama-2-7b-chat")["Statement"]
        if s.get("Sid") == "TritonHeadBucket"
    ]


def test_irsa_service_accounts_carry_the_role(vllm):
    model, _ = vllm
    manifest = tm.service_account_manifest(model, irsa_role_arn="arn:aws:iam::123456789012:role/r")
    validate_k8s_object(manifest)
    assert manifest["metadata"]["annotations"] == {tm.IRSA_ROLE_ANNOTATION: "arn:aws:iam::123456789012:role/r"}


def test_server_exports_the_histograms_the_dashboard_plots():
    import json as _json

    from components.observability.builders.dashboards import triton as dashboard
    from components.serving.builders.triton_manifests import tritonserver_args

    uses_histograms = "_histogram_" in _json.dumps(dashboard.dashboard())
    assert uses_histograms
    assert "--metrics-config=histogram_latencies=true" in tritonserver_args("s3://b/models/m")


def test_a_changed_vllm_repository_rolls_the_pods(vllm):
    """Triton reads model.json at start only (and OpenAI-mode pods copy it once): the pod template
    carries the repository's content hash, so a changed engine argument makes a rollout."""
    model, cfg = vllm

    def annotation(m):
        manifest = deployment_manifest(m, cfg.site_of(m), bucket="b")
        return manifest["spec"]["template"]["metadata"]["annotations"]["tritonllm.io/repository"]

    changed = stack_config("vllm", vllm={"maxNumSeqs": 17}).models[0]
    assert annotation(model) == annotation(stack_config("vllm").models[0])
    assert annotation(model) != annotation(changed)
