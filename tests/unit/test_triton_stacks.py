"""TritonLLM under Pulumi mocks, for every stack: schemas, autoscaling, monitoring, IAM, secrets.

Runs the real program (`__main__.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from components.serving.builders import triton_manifests as tm
from components.serving.builders import weights_mirror as wm
from tests.k8s_schema import is_custom_resource, validate_custom_resource, validate_k8s_object
from tests.unit.conftest import stack_run_for
from tests.unit.harness import (
    DEFAULT_SECRETS,
    ProgramRun,
    RecordedResource,
    plain_occurrences,
    run_program,
    stack_files,
)

TRITON_TYPE = "tritonllm:serving:TritonLLM"
NGC_KEY = "nvapi-mock-ngc-key-0123456789"


_RUNS: dict[tuple[str, bool], ProgramRun] = {}


def triton_run(stack: str, *, with_ngc_key: bool = False) -> ProgramRun:
    """The program's run of `stack` (with an NGC API key set too, when asked)."""
    if not with_ngc_key:
        return stack_run_for(stack)
    if (stack, with_ngc_key) not in _RUNS:
        _RUNS[(stack, with_ngc_key)] = run_program(stack, secrets={"ngcApiKey": NGC_KEY})
    return _RUNS[(stack, with_ngc_key)]


@pytest.fixture(scope="module", params=stack_files())
def run(request) -> ProgramRun:
    return triton_run(request.param)


def servers(run: ProgramRun) -> list[RecordedResource]:
    found = run.of_type(TRITON_TYPE)
    assert found, "no TritonLLM in the program"
    return found


def descendants(run: ProgramRun, parent: RecordedResource) -> Iterator[RecordedResource]:
    for child in run.children_of(parent):
        yield child
        yield from descendants(run, child)


def triton_objects(run: ProgramRun, server: RecordedResource) -> list[RecordedResource]:
    return [r for r in descendants(run, server) if r in run.k8s_objects()]


def one(objects: list[RecordedResource], kind: str) -> dict[str, Any]:
    found = [r.manifest() for r in objects if r.inputs.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def workload(objects: list[RecordedResource]) -> dict[str, Any]:
    """The model's Deployment, or for a multi-node model its LeaderWorkerSet seen as the leader's
    Deployment-like template (labels as the LWS pod webhook sets them on leader pods)."""
    found = [r.manifest() for r in objects if r.inputs.get("kind") in ("Deployment", "LeaderWorkerSet")]
    assert len(found) == 1, f"expected one Deployment or LeaderWorkerSet, found {len(found)}"
    manifest = found[0]
    if manifest["kind"] == "Deployment":
        return manifest
    template = json.loads(json.dumps(manifest["spec"]["leaderWorkerTemplate"]["leaderTemplate"]))
    template["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] = "0"
    return {**manifest, "spec": {"template": template}}


def engines(run: ProgramRun, server: RecordedResource) -> list[RecordedResource]:
    return [r for r in descendants(run, server) if r.type.endswith("TrtllmEngine")]


def test_each_model_gets_its_own_triton(run):
    names = sorted(s.name for s in servers(run))
    assert names == sorted(m["name"] for m in json.loads(json.dumps(run.config["tritonllm:models"])))


def _all_manifests(run: ProgramRun) -> list[dict[str, Any]]:
    found = []
    for server in servers(run):
        found += [resource.manifest() for resource in triton_objects(run, server)]
        for engine in engines(run, server):
            found += [engine.inputs["job"], engine.inputs["script_config_map"]]
    return found


def test_every_builtin_kubernetes_object_validates(run):
    builtin = [m for m in _all_manifests(run) if not is_custom_resource(m)]
    for manifest in builtin:
        validate_k8s_object(manifest)
    assert len(builtin) >= 8 * len(servers(run))


def test_every_custom_resource_matches_its_crd(run):
    custom = [m for m in _all_manifests(run) if is_custom_resource(m)]
    for manifest in custom:
        validate_custom_resource(manifest)
    assert len(custom) >= 2 * len(servers(run))  # PodMonitor, routes


def test_deployments_follow_the_model_config(run):
    models = {m["name"]: m for m in run.config["tritonllm:models"]}
    for server in servers(run):
        deployment = workload(triton_objects(run, server))
        model = models[server.name]
        spec = deployment["spec"]["template"]["spec"]
        assert deployment["metadata"]["namespace"] == server.name
        assert spec["nodeSelector"] == {"karpenter.sh/nodepool": model["nodePool"]}
        image = spec["containers"][0]["image"]
        if model.get("multiNode"):
            # multi-node pods run the image the program builds on the runtime's pin (issue 19), by digest
            repository, tag = image.split("@sha256:")[0].rsplit(":", 1)
            assert ".dkr.ecr." in repository and repository.endswith("/serving"), image
            assert tag.startswith("multinode-"), image
        else:
            assert image.endswith(f"-{model['backend']}-python-py3")


def test_hpa_metric_is_exposed_by_the_prometheus_adapter(run):
    # what the program's prometheus-adapter release serves (its Helm values, as deployed)
    exposed = {
        rule["name"]["as"] for rule in run.helm_release("prometheus-adapter").inputs["values"]["rules"]["custom"]
    }
    assert exposed
    records = {
        rule["seriesQuery"].split("{")[0]
        for rule in run.helm_release("prometheus-adapter").inputs["values"]["rules"]["custom"]
    }
    for server in servers(run):
        objects = triton_objects(run, server)
        if not [r for r in objects if r.inputs.get("kind") == "HorizontalPodAutoscaler"]:
            # minReplicas 0: KEDA's HPA, from a ScaledObject whose prometheus trigger reads the adapter's record
            so = one(objects, "ScaledObject")
            (query,) = [t["metadata"]["query"] for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
            assert query.removeprefix("sum(").split("{")[0] in records, (server.name, query)
            assert so["spec"]["scaleTargetRef"]["name"] == workload(objects)["metadata"]["name"]
            continue
        hpa = one(objects, "HorizontalPodAutoscaler")
        for metric in hpa["spec"]["metrics"]:
            assert metric["type"] == "Pods"
            assert metric["pods"]["metric"]["name"] in exposed, (server.name, metric, sorted(exposed))
        assert hpa["spec"]["scaleTargetRef"]["name"] == workload(triton_objects(run, server))["metadata"]["name"]


def test_pod_monitor_selects_the_pods_and_their_metrics_port(run):
    for server in servers(run):
        objects = triton_objects(run, server)
        monitor, deployment = one(objects, "PodMonitor"), workload(objects)
        template = deployment["spec"]["template"]
        assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
        assert {"http", "grpc", "metrics"} <= ports


def _policy_of(run: ProgramRun, role_name: str) -> dict[str, Any]:
    policies = [r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == f"{role_name}-inline"]
    assert len(policies) == 1, role_name
    return json.loads(policies[0].inputs["policy"])


def _bucket_arn(run: ProgramRun) -> str:
    buckets = run.of_type("aws:s3/bucket:Bucket")
    assert len(buckets) == 1
    return buckets[0].outputs["arn"]


def test_the_triton_role_can_only_read_its_own_prefix(run):
    """Read only, of its own prefixes; the one write is a vLLM model's own compile cache."""
    bucket_arn = _bucket_arn(run)
    for server in servers(run):
        objects = triton_objects(run, server)
        deployment = workload(objects)
        annotations = deployment["spec"]["template"].get("metadata", {}).get("annotations", {})
        key = annotations.get("tritonllm.io/engine-key")
        # Its own repository (vLLM) or engine (TRT-LLM), and the model's weights mirror (vLLM, llmapi).
        prefixes = [f"engines/{key}"] if key else []
        if "tritonllm.io/repository" in annotations:
            prefixes.append(f"models/{server.name}")
        if "tritonllm.io/weights" in annotations:
            repo, commit = annotations["tritonllm.io/weights"].split("@")
            prefixes.append(f"hf-mirror/{repo}/{commit}")
        # vLLM with the shared compile cache: read and write its own compile-cache/<model>/ (test_compile_cache.py).
        compile_cache = f"compile-cache/{server.name}" if "tritonllm.io/compile-cache" in annotations else None
        if compile_cache:
            prefixes.append(compile_cache)
        assert prefixes
        policy = _policy_of(run, f"{server.name}-triton")
        read = []
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
            if actions & {"s3:PutObject", "s3:AbortMultipartUpload"}:
                assert compile_cache and actions == {"s3:PutObject", "s3:AbortMultipartUpload"}, actions
                assert statement["Resource"] == [f"{bucket_arn}/{compile_cache}/*"]
                continue
            assert actions <= {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}, actions
            if "s3:GetObject" in actions:
                read += statement["Resource"]
            if "s3:ListBucket" in actions:
                assert statement["Resource"] == [bucket_arn]
                condition = statement["Condition"]
                if "Null" in condition:  # Triton's HeadBucket check (vLLM): names only, never contents
                    assert condition == {"Null": {"s3:prefix": "true"}} and not key
                else:
                    allowed = condition["StringLike"]["s3:prefix"]
                    assert any(all(p.startswith(prefix) for p in allowed) for prefix in prefixes), allowed
        assert sorted(read) == sorted(f"{bucket_arn}/{prefix}/*" for prefix in prefixes)
        service_account = next(
            r.manifest()
            for r in objects
            if r.inputs.get("kind") == "ServiceAccount" and r.manifest()["metadata"]["name"] == "triton"
        )
        roles = [r for r in run.of_type("aws:iam/role:Role") if r.name == f"{server.name}-triton"]
        assert len(roles) == 1
        trust = json.loads(roles[0].inputs["assumeRolePolicy"])["Statement"][0]
        if key or "tritonllm.io/llmapi-config" in annotations:  # TRT-LLM: EKS Pod Identity (the AWS CLI reads S3)
            associations = [
                r
                for r in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                if r.name == f"{server.name}-triton-association"
            ]
            assert len(associations) == 1
            assert associations[0].inputs["namespace"] == server.name
            assert associations[0].inputs["serviceAccount"] == tm.SERVICE_ACCOUNT
            assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        else:  # vLLM: IRSA (tritonserver's own S3 client predates Pod Identity)
            assert service_account["metadata"]["annotations"][tm.IRSA_ROLE_ANNOTATION] == roles[0].outputs["arn"]
            subject = next(v for k, v in trust["Condition"]["StringEquals"].items() if k.endswith(":sub"))
            assert subject == f"system:serviceaccount:{server.name}:{tm.SERVICE_ACCOUNT}"


def test_trtllm_engines_are_built_where_they_are_served_and_staged_by_key(run):
    for server in servers(run):
        found = engines(run, server)
        deployment = workload(triton_objects(run, server))
        if deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("vllm-python-py3"):
            assert not found
            continue
        if "tritonllm.io/llmapi-config" in deployment["spec"]["template"]["metadata"].get("annotations", {}):
            assert not found  # TRT-LLM through the LLM API: nothing to build
            continue
        assert len(found) == 1
        engine = found[0]
        key = engine.inputs["key"]
        assert engine.inputs["prefix"] == f"engines/{key}/"
        assert engine.is_secret("kubeconfig")
        job_pod = engine.inputs["job"]["spec"]["template"]["spec"]
        assert job_pod["nodeSelector"] == deployment["spec"]["template"]["spec"]["nodeSelector"]
        stage = deployment["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
        assert f"engines/{key}/" in stage
        # The builder may write only under its engine's prefix, and read the weights mirror it builds from.
        bucket_arn = _bucket_arn(run)
        mirror = engine.inputs["job"]["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
        prefix = wm.MIRROR_PREFIX + mirror.split(wm.MIRROR_PREFIX, 1)[1].split(wm.COMPLETE_MARKER)[0]
        assert prefix.startswith("hf-mirror/")
        for statement in _policy_of(run, f"{server.name}-engine-builder")["Statement"]:
            writes = {"s3:PutObject", "s3:DeleteObject"} & set(statement["Action"])
            for resource in statement["Resource"]:
                assert resource in (bucket_arn, f"{bucket_arn}/engines/{key}/*") or (
                    not writes and resource == f"{bucket_arn}/{prefix}*"
                ), resource


def test_secrets_stay_secret():
    token = DEFAULT_SECRETS["hfToken"]
    for stack in stack_files():
        run = triton_run(stack, with_ngc_key=True)
        found_token = found_key = False
        for resource in run.resources:
            for needle in (token, NGC_KEY):
                for path in plain_occurrences(resource.inputs, needle):
                    assert resource.is_secret(path), (
                        f"{needle[:6]}... in plain at {resource.type} {resource.name} {path}"
                    )
                    found_token |= needle == token and resource.inputs.get("kind") == "Secret"
                    found_key |= needle == NGC_KEY and resource.inputs.get("kind") == "Secret"
        assert found_token, "the HF token Secret is missing"  # in the hf-mirror namespace only
        token_secrets = [r for r in run.resources if r.inputs.get("kind") == "Secret" and r.name.endswith("hf-token")]
        assert [r.manifest()["metadata"]["namespace"] for r in token_secrets] == [wm.MIRROR_NAMESPACE]
        assert found_key, "the NGC image pull Secret is missing"
        for server in servers(run):
            objects = triton_objects(run, server)
            pull = [r for r in objects if r.inputs.get("type") == "kubernetes.io/dockerconfigjson"]
            assert len(pull) == 1 and pull[0].is_secret("stringData")
            deployment = workload(objects)
            assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": tm.IMAGE_PULL_SECRET}]
