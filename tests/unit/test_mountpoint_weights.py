"""models[].weights.delivery: mountpoint (docs/weights.md "Per node: the Mountpoint volume"): the mirror as
a Mountpoint for Amazon S3 volume, one Mountpoint Pod per node shared by the model's pods there.

What is checked, and against what:
- the PV and PVC against the Kubernetes core schemas (tests/k8s_schema.py);
- the flags Mountpoint gets, computed the way the driver computes them from our PV (tests/mountpoint_driver.py,
  ported from awslabs/mountpoint-s3-csi-driver v2.7.0), against mount-s3's own flags (mountpoint-s3 1.22.3);
- which pods share a Mountpoint Pod (the driver's sharing key): two replicas of a model do, two models never;
- the model's reader role allows exactly the S3 requests Mountpoint makes for the mount, and not another
  model's mirror;
- the pods: vLLM reads the volume at /weights after a warm read into the node's cache, llmapi copies from it,
  no emptyDir copy
  for vLLM; the program: the add-on through the cluster's loop, with no role of its own, only when asked.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.catalog import versions
from components.config import CPU_NODE_POOL_NAME, ConfigError
from components.platform.builders import addon_versions, pod_security
from components.serving.builders import mountpoint_weights as mw
from components.serving.builders import triton_manifests as tm
from components.serving.builders import weights_mirror as wm
from components.serving.builders.model_repository import vllm_engine_args
from tests.k8s_schema import validate_custom_resource, validate_k8s_object
from tests.mountpoint_driver import DriverRefusal, parse_args, publish_args, sharing_key
from tests.unit.conftest import stack_run_for
from tests.unit.test_triton_manifests import stack_config

COMMIT = "3" * 40
OTHER_COMMIT = "4" * 40
BUCKET = "models-bucket"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
MOUNTPOINT = {"delivery": "mountpoint"}

# mount-s3's long flags at Mountpoint 1.22.3 (the release the v2.7.0 driver ships: CHANGELOG v2.6.0 "Support
# Mountpoint version 1.22.3", v2.7.0 adds none), mountpoint-s3/src/cli.rs: the ones our volumes may produce.
MOUNT_S3_FLAGS = {
    "--read-only",
    "--prefix",
    "--region",
    "--uid",
    "--gid",
    "--allow-other",
    "--allow-root",
    "--dir-mode",
    "--file-mode",
    "--max-cache-size",
}


def mountpoint_model(stack: str, **weights: Any):
    cfg = stack_config(stack, weights={**MOUNTPOINT, **weights})
    return cfg.models[0], cfg


def objects(stack: str = "vllm", commit: str = COMMIT, **weights: Any) -> tuple[Any, dict, dict, dict]:
    model, cfg = mountpoint_model(stack, **weights)
    mirror = wm.resolved_mirror(model.hf_model_id, commit)
    pv = mw.persistent_volume_manifest(model, mirror, bucket=BUCKET, region=cfg.region)
    pvc = mw.persistent_volume_claim_manifest(model, mirror)
    deployment = tm.deployment_manifest(model, cfg.site_of(model), bucket=BUCKET, weights=mirror)
    return model, pv, pvc, deployment


def pod_of(deployment: dict[str, Any], node: str, uid: str) -> dict[str, Any]:
    """A Pod the Deployment's ReplicaSet would make, as scheduled on `node`."""
    template = deployment["spec"]["template"]
    spec = {**template["spec"], "nodeName": node}
    meta = {"name": f"triton-{uid}", "namespace": deployment["metadata"]["namespace"], "uid": uid}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# --------------------------------------------------------------------------- the PV and the claim


@pytest.mark.parametrize("stack", ["vllm", "llmapi"])
def test_volume_and_claim_are_valid_and_bound_to_each_other_only(stack: str) -> None:
    model, pv, pvc, _ = objects(stack)
    validate_k8s_object(pv)
    validate_k8s_object(pvc)
    assert pv["spec"]["claimRef"] == {"namespace": model.name, "name": pvc["metadata"]["name"]}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""  # static provisioning
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    csi = pv["spec"]["csi"]
    assert csi["driver"] == "s3.csi.aws.com" and csi["volumeHandle"] == pv["metadata"]["name"]
    assert csi["volumeAttributes"] == {
        "bucketName": BUCKET,
        "authenticationSource": "pod",
        "cache": "emptyDir",
        "cacheEmptyDirSizeLimit": model.weights.node_cache_size,
    }


def test_a_new_commit_is_a_new_volume_and_claim() -> None:
    _, pv, pvc, _ = objects()
    _, pv2, pvc2, _ = objects(commit=OTHER_COMMIT)
    assert pv["metadata"]["name"] != pv2["metadata"]["name"]
    assert pvc["metadata"]["name"] != pvc2["metadata"]["name"]


def test_two_models_never_share_a_volume_name_or_handle() -> None:
    cfg = stack_config("vllm")
    a, b = (
        m.model_copy(update={"weights": m.weights.model_copy(update={"delivery": "mountpoint"})}) for m in cfg.models
    )
    # the same repository and commit: still one volume each (the sharing key names the PV)
    mirror = wm.resolved_mirror(a.hf_model_id, COMMIT)
    names = {mw.volume_name(m, mirror) for m in (a, b)}
    assert len(names) == 2


# --------------------------------------------------------------------------- what Mountpoint is started with


def test_mountpoint_flags_as_the_driver_computes_them() -> None:
    model, pv, _, deployment = objects()
    fs_group = deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
    args = publish_args(pv, fs_group=fs_group)
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    assert args == {
        "--read-only": "",
        "--prefix": mirror.prefix,
        "--region": stack_config("vllm").region,
        "--uid": str(pod_security.TRITON_UID),
        "--gid": str(pod_security.TRITON_GID),
        "--allow-other": "",
        "--dir-mode": "770",
        "--file-mode": "660",
        # 95% of the 64Gi emptyDir limit, in MiB: Mountpoint evicts before the kubelet would evict its pod
        "--max-cache-size": str(int(64 * 1024 * 0.95)),
    }
    assert set(args) <= MOUNT_S3_FLAGS
    assert args["--prefix"].endswith("/")  # mountpoint-s3-fs/src/s3/prefix.rs: "prefix must end in '/'"
    assert "--allow-root" not in args  # the workload pods are not root: allow-other, never allow-root
    # and so without an fsGroup too (our options say allow-other themselves, the driver would add allow-root)
    bare = publish_args(pv, fs_group=None)
    assert "--allow-other" in bare and "--allow-root" not in bare


def test_mount_options_repeat_no_flag() -> None:
    _, pv, _, _ = objects()
    keys = [next(iter(parse_args([o]))) for o in pv["spec"]["mountOptions"]]
    assert len(keys) == len(set(keys)), keys


def test_the_driver_refuses_what_we_never_write() -> None:
    """The port refuses and rewrites as the driver does, so the checks above could fail."""
    _, pv, _, _ = objects()
    with pytest.raises(DriverRefusal, match="-o"):
        publish_args(
            {**pv, "spec": {**pv["spec"], "mountOptions": [*pv["spec"]["mountOptions"], "-o ro"]}}, fs_group=1000
        )
    with pytest.raises(DriverRefusal, match="capability"):
        publish_args({**pv, "spec": {**pv["spec"], "accessModes": ["ReadWriteOnce"]}}, fs_group=1000)
    assert parse_args(["foreground", "prefix=a/", "  region us-east-1 "]) == {"--prefix": "a/", "--region": "us-east-1"}
    without_allow_other = {**pv, "spec": {**pv["spec"], "mountOptions": ["read-only"]}}
    assert "--allow-root" in publish_args(without_allow_other, fs_group=None)


@pytest.mark.parametrize(("size", "mib"), [("10Gi", 9728), ("200Gi", 194560)])
def test_cache_limit_becomes_max_cache_size(size: str, mib: int) -> None:
    _, pv, _, _ = objects(nodeCacheSize=size)
    assert publish_args(pv, fs_group=1000)["--max-cache-size"] == str(mib)


# --------------------------------------------------------------------------- who shares a Mountpoint Pod


def test_replicas_on_one_node_share_one_mountpoint_pod_and_other_nodes_or_models_do_not() -> None:
    model, pv, _, deployment = objects()
    a, b = pod_of(deployment, "node-1", "a"), pod_of(deployment, "node-1", "b")
    elsewhere = pod_of(deployment, "node-2", "c")
    assert sharing_key(a, pv) == sharing_key(b, pv)
    assert sharing_key(a, pv) != sharing_key(elsewhere, pv)
    # another model on the same node: its own PV, namespace and service account
    cfg = stack_config("vllm")
    other = cfg.models[1].model_copy(update={"weights": model.weights})
    other_mirror = wm.resolved_mirror(other.hf_model_id, COMMIT)
    other_pv = mw.persistent_volume_manifest(other, other_mirror, bucket=BUCKET, region=cfg.region)
    other_deployment = tm.deployment_manifest(other, cfg.site_of(other), bucket=BUCKET, weights=other_mirror)
    assert sharing_key(pod_of(other_deployment, "node-1", "d"), other_pv) != sharing_key(a, pv)


def test_every_pod_of_a_model_has_the_same_fs_group_and_service_account() -> None:
    """What sharing needs of the pod (fsGroup, and for pod credentials the service account): a Deployment's
    pods are one template, so the key differs only by node (checked above); here the template's own values."""
    _, _, _, deployment = objects()
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["fsGroup"] == pod_security.TRITON_GID
    assert spec["serviceAccountName"] == tm.SERVICE_ACCOUNT


# --------------------------------------------------------------------------- the pods


def test_vllm_reads_the_volume_itself_after_a_warm_read() -> None:
    model, _, pvc, deployment = objects("vllm")
    validate_k8s_object(deployment)
    pod = deployment["spec"]["template"]["spec"]
    weights = next(v for v in pod["volumes"] if v["name"] == tm.WEIGHTS_VOLUME)
    assert weights == {
        "name": tm.WEIGHTS_VOLUME,
        "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"], "readOnly": True},
    }
    assert not any("emptyDir" in v for v in pod["volumes"] if v["name"] in (tm.WEIGHTS_VOLUME, tm.MIRROR_MOUNT_VOLUME))
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    assert {"name": tm.WEIGHTS_VOLUME, "mountPath": wm.WEIGHTS_DIR, "readOnly": True} in triton["volumeMounts"]
    [check] = [c for c in pod["initContainers"] if c["name"] == "stage-weights"]  # coldstart's "weights staged"
    assert check["volumeMounts"][0] == {"name": tm.WEIGHTS_VOLUME, "mountPath": wm.WEIGHTS_DIR, "readOnly": True}
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    assert (
        mirror.key in check["command"][2] and "cp " not in check["command"][2] and "aws s3" not in check["command"][2]
    )
    assert 'cat "$f" > /dev/null &' in check["command"][2]  # the warm read (run below)
    # vLLM's own loader, unchanged: the same model.json as with stage
    assert vllm_engine_args(model) == vllm_engine_args(stack_config("vllm").models[0])


def test_llmapi_copies_from_the_volume_into_its_own() -> None:
    model, _, pvc, deployment = objects("llmapi")
    validate_k8s_object(deployment)
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[tm.WEIGHTS_VOLUME] == {"name": tm.WEIGHTS_VOLUME, "emptyDir": {}}
    assert volumes[tm.MIRROR_MOUNT_VOLUME]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    [stage] = [c for c in pod["initContainers"] if c["name"] == "stage-weights"]
    assert {"name": tm.MIRROR_MOUNT_VOLUME, "mountPath": tm.MIRROR_MOUNT_DIR, "readOnly": True} in stage["volumeMounts"]
    script = stage["command"][2]
    assert f'cp -R "{tm.MIRROR_MOUNT_DIR}/." "{wm.WEIGHTS_DIR}/"' in script and "aws s3" not in script
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    assert tm.MIRROR_MOUNT_DIR not in {m["mountPath"] for m in triton["volumeMounts"]}


SHELLS = [sh for sh in ("/bin/sh", "/bin/bash", "/bin/dash") if Path(sh).exists()]


@pytest.mark.parametrize("shell", SHELLS)
def test_init_scripts_refuse_an_incomplete_mirror_and_read_every_file(tmp_path: Path, shell: str) -> None:
    """The init containers' scripts, run with `shell` on a directory standing in for the volume; a `cat` first on
    PATH records what the warm read opens (and fails on request)."""
    mirror = wm.resolved_mirror("acme/model", COMMIT)
    mount, target, bin_dir = tmp_path / "mirror", tmp_path / "weights", tmp_path / "bin"
    for d in (mount / "tokenizer", target, bin_dir):
        d.mkdir(parents=True)
    files = {"config.json": b"{}", "model-00001-of-00002.safetensors": b"\0" * 4096, "tokenizer/vocab.txt": b"a"}
    for name, data in files.items():
        (mount / name).write_bytes(data)
    log = tmp_path / "read.log"
    real_cat = shutil.which("cat")
    (bin_dir / "cat").write_text(
        f'#!/bin/sh\necho "$1" >> {log}\n[ -z "${{FAIL_ON:-}}" ] || case "$1" in *"$FAIL_ON") exit 3;; esac\n'
        f'exec {real_cat} "$@"\n'
    )
    (bin_dir / "cat").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(script: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([shell, "-c", script], capture_output=True, text=True, env={**env, **extra})

    copy = mw.check_weights_script(mirror, str(mount), copy_to=str(target))
    warm = mw.check_weights_script(mirror, str(mount))
    for script in (copy, warm):
        assert run(script).returncode == 1  # no marker yet
    (mount / wm.COMPLETE_MARKER).write_text("not the key\n")
    assert run(warm).returncode == 1
    (mount / wm.COMPLETE_MARKER).write_text(mirror.key + "\n")
    log.unlink()
    done = run(warm)
    assert done.returncode == 0 and done.stdout.startswith("tritonllm: weights staged from"), done
    read = set(log.read_text().split())
    assert {str(mount / name) for name in files} <= read, read  # every file, the subdirectory's too
    failed = run(warm, FAIL_ON="vocab.txt")
    assert failed.returncode == 1 and "failed" in failed.stderr, failed
    copied = run(copy)
    assert copied.returncode == 0, copied.stderr
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == sorted(files)


# --------------------------------------------------------------------------- S3 access: the reader role


def _like(pattern: str, value: str) -> bool:
    """IAM StringLike: `*` any run of characters (empty too), `?` one; case-sensitive."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def allowed(policy: dict[str, Any], action: str, resource: str, prefix: str | None = None) -> bool:
    """Identity-policy evaluation for the Allow statements and the condition operators our policies use
    (IAM User Guide, "Policy evaluation logic"; "Condition operators": StringLike, Null)."""
    for st in policy["Statement"]:
        if st["Effect"] != "Allow" or action not in st["Action"]:
            continue
        if not any(_like(r, resource) for r in st["Resource"]):
            continue
        cond = st.get("Condition", {})
        ok = True
        for values in cond.get("StringLike", {}).values():
            ok &= prefix is not None and any(_like(v, prefix) for v in values)
        for want in cond.get("Null", {}).values():
            ok &= (prefix is None) == (want == "true")
        if ok:
            return True
    return False


@pytest.mark.parametrize("stack", ["vllm", "llmapi"])
def test_the_model_role_allows_what_mountpoint_asks_and_nothing_of_another_mirror(stack: str) -> None:
    model, pv, _, _ = objects(stack)
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    repository = "" if model.uses_llmapi else f"models/{model.name}"
    policy = tm.triton_reader_policy(model, BUCKET_ARN, repository, weights_prefix=mirror.prefix)
    p = mirror.prefix
    # mountpoint-s3-fs 1.22.3 src/s3/config.rs: ListObjectsV2(prefix=<mount prefix>) at mount; superblock.rs:
    # lookups list "<prefix><name>/" and head "<prefix><name>" (HeadObject is authorized as s3:GetObject)
    for listed in (p, f"{p}original/", f"{p}config.json/"):
        assert allowed(policy, "s3:ListBucket", BUCKET_ARN, listed), listed
    for key in ("config.json", "model-00001-of-00004.safetensors", wm.COMPLETE_MARKER):
        assert allowed(policy, "s3:GetObject", f"{BUCKET_ARN}/{p}{key}"), key
    other = wm.resolved_mirror("acme/another-model", COMMIT).prefix
    assert not allowed(policy, "s3:ListBucket", BUCKET_ARN, other)
    assert not allowed(policy, "s3:GetObject", f"{BUCKET_ARN}/{other}config.json")
    assert not allowed(policy, "s3:GetObject", f"{BUCKET_ARN}/{wm.MIRROR_PREFIX}acme/config.json")
    assert not allowed(policy, "s3:PutObject", f"{BUCKET_ARN}/{p}x")


# --------------------------------------------------------------------------- the program


@pytest.fixture(scope="module")
def mountpoint_run():
    return stack_run_for("vllm-mountpoint")


def test_the_addon_is_installed_through_the_cluster_loop_without_a_role(mountpoint_run) -> None:
    addon = mountpoint_run.one("aws:eks/addon:Addon", "tritonllm-vllm-aws-mountpoint-s3-csi-driver")
    assert addon.inputs["addonName"] == addon_versions.MOUNTPOINT_ADDON
    assert addon.inputs["addonVersion"] == versions.OPTIONAL_EKS_ADDONS[addon_versions.MOUNTPOINT_ADDON]
    assert not addon.inputs.get("podIdentityAssociations")
    cluster = mountpoint_run.one("tritonllm:platform:Cluster")
    assert addon.parent == cluster.urn
    # pod-level credentials: the run has exactly the roles the stage run has
    base = stack_run_for("vllm")
    assert sorted(r.name for r in mountpoint_run.of_type("aws:iam/role:Role")) == sorted(
        r.name for r in base.of_type("aws:iam/role:Role")
    )
    assert not [
        r for r in base.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == addon_versions.MOUNTPOINT_ADDON
    ]


def test_new_gpu_nodes_wait_for_the_driver_only_when_it_is_installed(mountpoint_run) -> None:
    # The driver removes this taint once its node plugin has registered (mountpoint-s3-csi-driver v2.7.0
    # pkg/driver/node/taint.go AgentNotReadyNodeTaintKey); without it a weights pod can land on a new node
    # before the driver can mount its volume.
    pools = [p for p in mountpoint_run.manifests("NodePool") if p["metadata"]["name"] != CPU_NODE_POOL_NAME]
    assert pools
    for pool in pools:
        validate_custom_resource(pool)
        assert pool["spec"]["template"]["spec"]["startupTaints"] == [
            {"key": "s3.csi.aws.com/agent-not-ready", "effect": "NoExecute"}
        ], pool["metadata"]["name"]
    # A taint nobody removes would keep every pod off the node: none without the add-on.
    for pool in stack_run_for("vllm").manifests("NodePool"):
        assert "startupTaints" not in pool["spec"]["template"]["spec"], pool["metadata"]["name"]


def test_the_program_registers_the_volume_claim_and_wires_the_pods(mountpoint_run) -> None:
    [pv] = mountpoint_run.manifests("PersistentVolume")
    claims = [
        c for c in mountpoint_run.manifests("PersistentVolumeClaim") if c["metadata"]["name"].startswith("weights-")
    ]
    assert [c["metadata"]["namespace"] for c in claims] == [pv["spec"]["claimRef"]["namespace"]]
    validate_k8s_object(pv)
    deployment = next(
        r
        for r in mountpoint_run.of_type("kubernetes:apps/v1:Deployment")
        if r.name == f"{pv['spec']['claimRef']['namespace']}-deployment"
    )
    claim = next(
        r
        for r in mountpoint_run.k8s_objects("PersistentVolumeClaim")
        if r.inputs["metadata"]["name"].startswith("weights-")
    )
    assert claim.urn in deployment.dependencies
    volumes = deployment.inputs["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": tm.WEIGHTS_VOLUME,
        "persistentVolumeClaim": {"claimName": claims[0]["metadata"]["name"], "readOnly": True},
    } in volumes


def test_model_namespace_network_policies_are_unchanged(mountpoint_run) -> None:
    """The Mountpoint Pods run in the driver's mount-s3 namespace (chart v2.7.0 values.yaml
    mountpointPod.namespace; templates/mount-s3-namespace.yaml): the model pods' egress stays as it was."""
    base = stack_run_for("vllm")
    assert json.dumps(sorted(map(json.dumps, mountpoint_run.manifests("NetworkPolicy")))) == json.dumps(
        sorted(map(json.dumps, base.manifests("NetworkPolicy")))
    )


def test_the_addon_check_and_doctor_cover_the_addon() -> None:
    on = stack_config("vllm", weights=MOUNTPOINT)
    off = stack_config("vllm")
    assert addon_versions.stack_addons(on)[addon_versions.MOUNTPOINT_ADDON] == "v2.7.0-eksbuild.1"
    assert addon_versions.MOUNTPOINT_ADDON not in addon_versions.stack_addons(off)
    problems = addon_versions.judge_published(
        addon_versions.stack_addons(on), {addon_versions.MOUNTPOINT_ADDON: ["v2.6.0-eksbuild.1"]}, "1.34"
    )
    assert [p.addon for p in problems] == [addon_versions.MOUNTPOINT_ADDON]


def test_the_preview_asks_for_the_addons_build_only_when_a_model_mounts(mountpoint_run) -> None:
    token = "aws:eks/getAddonVersion:getAddonVersion"
    asked = {c.args["addonName"]: c.args for c in mountpoint_run.calls if c.token == token}
    assert asked[addon_versions.MOUNTPOINT_ADDON]["kubernetesVersion"] == versions.EKS_VERSION
    assert addon_versions.MOUNTPOINT_ADDON not in {
        c.args["addonName"] for c in stack_run_for("vllm").calls if c.token == token
    }


def test_config_rejects_mountpoint_where_it_cannot_apply() -> None:
    with pytest.raises(ConfigError, match="weights.delivery"):
        stack_config("dev", weights=MOUNTPOINT)  # a TensorRT-LLM engine model


def test_tritonllm_check_names_the_volume_and_the_addon(tmp_path: Path) -> None:
    """`python -m tritonllm check` (offline) says what `pulumi up` adds for a mountpoint model."""
    import yaml

    from tests.unit.harness import REPO_ROOT
    from tritonllm import check

    stack = yaml.safe_load((REPO_ROOT / "Pulumi.vllm.yaml").read_text())
    stack["config"]["tritonllm:models"][0]["weights"] = MOUNTPOINT
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.mp.yaml").write_text(yaml.safe_dump(stack))
    text = "\n".join(check.check_stack(tmp_path, "mp", assume_secrets=True).lines())
    assert f"{addon_versions.MOUNTPOINT_ADDON} v2.7.0-eksbuild.1" in text
    assert text.count("weights through a Mountpoint for Amazon S3 volume") == 1  # models[0] only
    plain = "\n".join(check.check_stack(REPO_ROOT, "vllm", assume_secrets=True).lines())
    assert addon_versions.MOUNTPOINT_ADDON not in plain and "Mountpoint" not in plain


@pytest.mark.parametrize("stack", ["vllm", "llmapi"])
def test_mountpoint_adds_no_iam_at_all(stack: str) -> None:
    """The IAM goldens of the mountpoint variants (tests/unit/test_iam_golden.py keeps them equal to what the
    program registers) are those of their stacks, file for file: pod-level credentials, no driver role."""
    from tests.unit.harness import REPO_ROOT

    base, variant = REPO_ROOT / "tests/golden/iam" / stack, REPO_ROOT / "tests/golden/iam" / f"{stack}-mountpoint"

    def tree(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}

    assert tree(variant) and tree(variant) == tree(base)
