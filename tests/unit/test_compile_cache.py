"""vLLM's torch.compile cache shared between a model's replicas (issue 20): its key (every input varied;
unchanged = the same key), when it is on, the pod wiring (env, volume, restore init container, saving native
sidecar; probes untouched) against the Kubernetes schema, and the pod role's write of its own prefix only.

The scripts for real (bash, the AWS CLI, moto, a stand-in readiness endpoint): tests/providers/test_compile_cache_moto.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.catalog import versions
from components.catalog.triton_server import HTTP_PORT
from components.config import parse_stack_config
from components.platform.builders import pod_security
from components.serving.builders import compile_cache as cc
from components.serving.builders import triton_manifests as tm
from tests.k8s_schema import validate_k8s_object
from tests.unit.harness import load_stack_config
from tests.unit.test_triton_manifests import stack_config
from tests.weights_helpers import deployment_manifest

BASE: dict[str, Any] = {
    "image": versions.TRITON_VLLM_IMAGE,
    "model_json": '{"model": "/weights"}\n',
    "gpus_per_replica": 1,
    "tensor_parallel": 1,
    "instance_types": ["g5.xlarge", "g5.2xlarge"],
}


# --------------------------------------------------------------------------- the key


def test_the_key_is_stable_and_every_input_changes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    base = cc.compile_cache_key(**BASE)
    assert cc.compile_cache_key(**BASE) == base
    # The order the pool lists its types in is not an input.
    assert cc.compile_cache_key(**{**BASE, "instance_types": ["g5.2xlarge", "g5.xlarge"]}) == base
    variants = {
        "image": cc.compile_cache_key(**{**BASE, "image": versions.TRITON_VLLM_IMAGE + "-custom"}),
        "engine args": cc.compile_cache_key(**{**BASE, "model_json": '{"model": "/weights", "dtype": "bfloat16"}\n'}),
        "gpus per replica": cc.compile_cache_key(**{**BASE, "gpus_per_replica": 2}),
        "tensor parallel": cc.compile_cache_key(**{**BASE, "tensor_parallel": 2}),
        "instance types": cc.compile_cache_key(**{**BASE, "instance_types": ["g6.xlarge"]}),
        "layout version": cc.compile_cache_key(**BASE, layout_version=cc.COMPILE_CACHE_LAYOUT_VERSION + 1),
    }
    assert base not in variants.values(), [k for k, v in variants.items() if v == base]
    assert len(set(variants.values())) == len(variants)


def test_the_pod_key_follows_the_image_the_engine_args_and_the_pool() -> None:
    cfg = stack_config("vllm")
    model = cfg.models[0]
    site = cfg.site_of(model)
    base = tm.compile_cache_key(model, site, versions.TRITON_VLLM_IMAGE)
    assert tm.compile_cache_key(model, site, versions.TRITON_VLLM_IMAGE) == base
    assert tm.compile_cache_key(model, site, "123.dkr.ecr.us-west-2.amazonaws.com/serving:x") != base
    longer = stack_config("vllm", vllm={**model.vllm.model_dump(by_alias=True), "maxModelLen": 8192})
    assert tm.compile_cache_key(longer.models[0], longer.site_of(longer.models[0]), versions.TRITON_VLLM_IMAGE) != base
    g6 = with_pool(instanceFamilies=["g6"])
    assert tm.compile_cache_key(g6.models[0], g6.site_of(g6.models[0]), versions.TRITON_VLLM_IMAGE) != base
    # The manifest's key is the one over the image the container runs.
    manifest = deployment_manifest(model, site, bucket="models-b", image="123.dkr.ecr.us-west-2.amazonaws.com/s:1")
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations["tritonllm.io/compile-cache"] == tm.compile_cache_key(
        model, site, "123.dkr.ecr.us-west-2.amazonaws.com/s:1"
    )


def test_the_prefix_is_the_model_s_own() -> None:
    assert cc.model_prefix("llama") == "compile-cache/llama"
    assert cc.key_prefix("llama", "k" * 64) == f"compile-cache/llama/{'k' * 64}/"


# --------------------------------------------------------------------------- when it is on


def with_pool(**pool: Any):
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("vllm").items() if k.startswith("tritonllm:")}
    raw = copy.deepcopy(raw)
    raw["nodePools"][0] = {**raw["nodePools"][0], **pool}
    return parse_stack_config(raw, {"hfToken"})


def test_on_by_default_for_vllm_off_for_tensorrt_llm_eager_and_mixed_pools() -> None:
    cfg = stack_config("vllm")
    assert cc.wanted(cfg.models[0], cfg.site_of(cfg.models[0]).node_pool)
    off = stack_config("vllm", compileCache=False)
    assert not cc.wanted(off.models[0], off.site_of(off.models[0]).node_pool)
    eager = stack_config("vllm", vllm={"enforceEager": True})
    assert not cc.wanted(eager.models[0], eager.site_of(eager.models[0]).node_pool)
    mixed = with_pool(instanceFamilies=["g5", "g6"])
    assert not cc.wanted(mixed.models[0], mixed.site_of(mixed.models[0]).node_pool)
    for stack in ("dev", "llmapi"):
        trt = stack_config(stack)
        assert not cc.wanted(trt.models[0], trt.site_of(trt.models[0]).node_pool), stack


# --------------------------------------------------------------------------- the pod


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


@pytest.mark.parametrize("openai", [False, True], ids=["kserve", "openai"])
def test_the_pod_restores_then_saves_with_a_native_sidecar_and_probes_untouched(openai: bool) -> None:
    overrides = {"openai": {"enabled": True}} if openai else {}
    cfg = stack_config("vllm", **overrides)
    model = cfg.models[0]
    site = cfg.site_of(model)
    manifest = deployment_manifest(model, site, bucket="models-b")
    validate_k8s_object(manifest)
    off_cfg = stack_config("vllm", compileCache=False, **overrides)
    without = deployment_manifest(off_cfg.models[0], off_cfg.site_of(off_cfg.models[0]), bucket="models-b")
    validate_k8s_object(without)
    spec, plain = pod_spec(manifest), pod_spec(without)
    key = tm.compile_cache_key(model, site, versions.TRITON_VLLM_IMAGE)

    triton = spec["containers"][0]
    env = {e["name"]: e["value"] for e in triton["env"] if "value" in e}
    assert env["VLLM_CACHE_ROOT"] == "/compile-cache/vllm"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/compile-cache/inductor"
    assert env["TRITON_CACHE_DIR"] == "/compile-cache/triton"
    assert "VLLM_DISABLE_COMPILE_CACHE" not in env
    assert {"name": cc.VOLUME, "mountPath": "/compile-cache"} in triton["volumeMounts"]
    assert by_name(spec["volumes"])[cc.VOLUME] == {"name": cc.VOLUME, "emptyDir": {"sizeLimit": cc.VOLUME_SIZE}}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert triton[probe] == plain["containers"][0][probe], probe
    assert spec["terminationGracePeriodSeconds"] == plain["terminationGracePeriodSeconds"]
    assert triton["lifecycle"] == plain["containers"][0]["lifecycle"]

    names = [c["name"] for c in spec["initContainers"]]
    assert names[-2:] == [cc.RESTORE_CONTAINER, cc.SAVE_CONTAINER]  # after staging, the sidecar last
    assert [c["name"] for c in plain.get("initContainers", [])] == names[:-2]
    restore, save = (
        by_name(spec["initContainers"])[cc.RESTORE_CONTAINER],
        by_name(spec["initContainers"])[cc.SAVE_CONTAINER],
    )
    assert "restartPolicy" not in restore  # a plain init container: runs to completion before Triton
    assert save["restartPolicy"] == "Always"  # a native sidecar: runs beside Triton, stopped after it
    for c in (restore, save):
        assert c["image"] == versions.AWS_CLI_IMAGE
        assert c["securityContext"] == pod_security.container_security_context()
        assert "startupProbe" not in c and "readinessProbe" not in c and "livenessProbe" not in c
        assert "cpu" in c["resources"]["requests"] and "memory" in c["resources"]["limits"]
    assert by_name(restore["volumeMounts"])[cc.VOLUME] == {"name": cc.VOLUME, "mountPath": "/compile-cache"}
    assert by_name(save["volumeMounts"])[cc.VOLUME]["readOnly"] is True
    assert save["command"][:2] == ["/bin/bash", "-c"]  # /dev/tcp is bash's
    # Both scripts after aws_cli_container's AWS CLI config lines (the classic transfer client).
    assert restore["command"][-1].endswith("\n" + cc.restore_script("models-b", model.name, key))
    # The sidecar asks the Triton container's own readiness path, on KServe HTTP.
    ready = triton["readinessProbe"]["httpGet"]
    assert ready["port"] == "http" and ("http", HTTP_PORT) in tm.container_ports(model)
    assert save["command"][-1].endswith(
        "\n" + cc.save_script("models-b", model.name, key, ready_url_port=HTTP_PORT, ready_path=ready["path"])
    )
    assert f"/dev/tcp/127.0.0.1/{HTTP_PORT}" in save["command"][-1]
    assert f"GET {ready['path']} HTTP/1.0" in save["command"][-1]
    assert f"s3://models-b/compile-cache/{model.name}/{key}/" in save["command"][-1]
    assert manifest["spec"]["template"]["metadata"]["annotations"]["tritonllm.io/compile-cache"] == key


@pytest.mark.parametrize("stack", ["dev", "llmapi"])
def test_tensorrt_llm_pods_have_no_compile_cache(stack: str) -> None:
    cfg = stack_config(stack)
    model = cfg.models[0]
    kwargs = {"engine_key": "0" * 64} if model.builds_engine else {}
    manifest = deployment_manifest(model, cfg.site_of(model), bucket="models-b", **kwargs)
    spec = pod_spec(manifest)
    assert cc.VOLUME not in by_name(spec["volumes"])
    assert not {cc.RESTORE_CONTAINER, cc.SAVE_CONTAINER} & set(by_name(spec.get("initContainers", [])))
    assert not any(e["name"] == "VLLM_CACHE_ROOT" for e in spec["containers"][0]["env"])


# --------------------------------------------------------------------------- IAM

BUCKET_ARN = "arn:aws:s3:::models-b"


def test_the_pod_role_writes_its_own_model_s_prefix_only() -> None:
    base = {"Version": "2012-10-17", "Statement": [{"Sid": "ReadPrefixObjects", "Effect": "Allow"}]}
    document = cc.cache_access_policy(base, BUCKET_ARN, "llama")
    added = document["Statement"][1:]
    writes = [s for s in added if "s3:PutObject" in s["Action"]]
    assert writes == [
        {
            "Sid": "WriteCompileCache",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": [f"{BUCKET_ARN}/compile-cache/llama/*"],
        }
    ]
    for statement in added:
        actions = statement["Action"]
        assert not {"s3:DeleteObject", "s3:*", "s3:PutObjectAcl"} & set(actions)
        for resource in statement["Resource"]:
            assert resource == BUCKET_ARN or resource.startswith(f"{BUCKET_ARN}/compile-cache/llama/"), resource
        if actions == ["s3:ListBucket"]:
            assert statement["Condition"]["StringLike"]["s3:prefix"] == [
                "compile-cache/llama",
                "compile-cache/llama/",
                "compile-cache/llama/*",
            ]
    reads = [s for s in added if s["Action"] == ["s3:GetObject"]]
    assert reads and reads[0]["Resource"] == [f"{BUCKET_ARN}/compile-cache/llama/*"]
    assert len({s["Sid"] for s in document["Statement"]}) == len(document["Statement"])  # Sids stay unique
    kms = cc.cache_access_policy(base, BUCKET_ARN, "llama", kms_key_arn="arn:aws:kms:us-west-2:1:key/k")
    assert kms["Statement"][-1]["Action"] == ["kms:GenerateDataKey"]
    assert kms["Statement"][-1]["Resource"] == ["arn:aws:kms:us-west-2:1:key/k"]
