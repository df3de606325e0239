"""`nodePools[].imageCache` (docs/coldstart.md "Images on the node"): the snapshot's content key and skip, the
node class of a cache pool (CRD schema and CEL rules, its Bottlerocket TOML parsed back and its bootstrap
command held to Karpenter's own), the scripts the build instance runs (run here with bash against stand-ins
for `apiclient` and the ECR credential provider), which images a pool caches (held to the rendered pods), and
the component's wiring under Pulumi mocks. The provider against moto: tests/providers/test_image_cache_moto.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from components.catalog import versions
from components.config import NodePoolConfig
from components.platform.builders import image_cache as ic
from components.platform.builders.karpenter import (
    IMAGE_CACHE_BIND_DIRS,
    IMAGE_CACHE_BOOTSTRAP_COMMAND,
    ec2_node_class_manifest,
)
from components.platform.builders.multinode import efa_node_class_manifest
from components.providers.image_cache import snapshot_diff
from components.serving.builders.serving_image import node_pool_images
from tests.k8s_cel import cel_rules, rule_holds
from tests.k8s_schema import validate_custom_resource
from tests.unit.harness import run_program
from tests.unit.test_karpenter import _cel_checks_ec2_node_class

SNAPSHOT = "snap-0123456789abcdef0"
# Karpenter v1.14.1 pkg/providers/amifamily/bootstrap/bottlerocket.go, Script(), the RAID0 branch for a
# release before 1.46 (EnableDefaultMountPaths false): transcribed; checked against the Go source below
# when the upstream mirror is on this machine.
KARPENTER_RAID0_NAME = "000-mount-instance-storage"
KARPENTER_RAID0 = {
    "commands": [
        ["apiclient", "ephemeral-storage", "init"],
        [
            "apiclient",
            "ephemeral-storage",
            "bind",
            "--dirs",
            "/var/lib/containerd",
            "/var/lib/kubelet",
            "/var/log/pods",
        ],
    ],
    "essential": True,
    "mode": "always",
}
KARPENTER_MIRROR = Path("/work/.mirror/aws+karpenter-provider-aws/repo")


def assert_cel_rules_hold(manifest: dict) -> None:
    """Every CEL rule of the EC2NodeClass CRD the manifest reaches, evaluated with cel-python (tests/k8s_cel.py),
    except the alias rules: they call Kubernetes' string extension `split`, which cel-python lacks, and
    test_karpenter._cel_checks_ec2_node_class holds the alias to them by hand."""
    broken = [
        f"{path}: {rule.get('message', rule['rule'])}"
        for path, rule, value in cel_rules(manifest)
        if ".split(" not in rule["rule"] and not rule_holds(rule["rule"], value)
    ]
    assert not broken, broken
    assert any("volumeInitializationRate" in rule["rule"] for _p, rule, _v in cel_rules(manifest))


def _pool(**kw) -> NodePoolConfig:
    return NodePoolConfig.model_validate(
        {"name": "g5", "instanceFamilies": ["g5"], "amiFamily": "Bottlerocket", "amiVersion": "v1.47.0", **kw}
    )


def _cache_pool(**cache) -> NodePoolConfig:
    return _pool(imageCache={"enabled": True, **cache})


# --------------------------------------------------------------------------- the key


KEY_INPUTS = {
    "eks_version": "1.34",
    "ami_version": "v1.47.0",
    "images": ["nvcr.io/nvidia/tritonserver:26.01-vllm-python-py3", "public.ecr.aws/aws-cli/aws-cli:2.31.39"],
    "volume_size_gib": 500,
    "arch": "x86_64",
    "layout_version": "1",
}
VARIED = {
    "eks_version": "1.35",
    "ami_version": "v1.48.0",
    "images": ["nvcr.io/nvidia/tritonserver:26.02-vllm-python-py3", "public.ecr.aws/aws-cli/aws-cli:2.31.39"],
    "volume_size_gib": 600,
    "arch": "arm64",
    "layout_version": "2",
}


def test_the_key_is_stable_and_blind_to_image_order_and_duplicates():
    key = ic.cache_key(**KEY_INPUTS)
    assert re.fullmatch(r"[0-9a-f]{64}", key) and key == ic.cache_key(**KEY_INPUTS)
    shuffled = dict(KEY_INPUTS, images=[*reversed(KEY_INPUTS["images"]), KEY_INPUTS["images"][0]])
    assert ic.cache_key(**shuffled) == key


@pytest.mark.parametrize("name", sorted(VARIED))
def test_every_input_changes_the_key(name):
    assert ic.cache_key(**dict(KEY_INPUTS, **{name: VARIED[name]})) != ic.cache_key(**KEY_INPUTS)


def test_a_pinned_digest_and_an_added_image_change_the_key():
    base = ic.cache_key(**KEY_INPUTS)
    pinned = [KEY_INPUTS["images"][0] + "@sha256:" + "a" * 64, KEY_INPUTS["images"][1]]
    added = [*KEY_INPUTS["images"], "public.ecr.aws/docker/library/python:3.12.12-slim"]
    assert (
        len({base, ic.cache_key(**dict(KEY_INPUTS, images=pinned)), ic.cache_key(**dict(KEY_INPUTS, images=added))})
        == 3
    )


def test_unchanged_inputs_are_no_work_a_new_key_or_unknown_is_a_replace_new_zones_an_update():
    olds = {"key": "k1", "fast_snapshot_restore_zones": ["us-west-2a"], "images": ["a"], "subnet_id": "subnet-1"}
    assert snapshot_diff(olds, dict(olds)) == (False, [])
    assert snapshot_diff(olds, dict(olds, subnet_id="subnet-2")) == (False, [])  # where it is built: not content
    assert snapshot_diff(olds, dict(olds, key="k2")) == (True, ["key"])
    assert snapshot_diff(olds, dict(olds, fast_snapshot_restore_zones=[])) == (True, [])
    from pulumi.runtime.rpc import UNKNOWN

    assert snapshot_diff(olds, dict(olds, key=UNKNOWN)) == (True, ["key"])  # an image still being built


def test_the_ami_parameter_is_karpenters_path_for_the_release():
    # Karpenter v1.14.1 pkg/providers/amifamily/bottlerocket.go DescribeImageQuery (version without its "v")
    assert ic.ami_parameter("1.34", "v1.47.0") == "/aws/service/bottlerocket/aws-k8s-1.34/x86_64/1.47.0/image_id"


# --------------------------------------------------------------------------- the node class


def test_a_cache_pool_node_class_is_valid_against_the_crd_and_its_cel_rules():
    manifest = ec2_node_class_manifest(_cache_pool(), "c1", "node-role", {"team": "ml"}, SNAPSHOT)
    validate_custom_resource(manifest)
    assert_cel_rules_hold(manifest)
    _cel_checks_ec2_node_class(manifest)
    spec = manifest["spec"]
    # Karpenter's RAID0 would bind /var/lib/containerd over the snapshot's: never on a cache pool
    assert "instanceStorePolicy" not in spec
    root, data = spec["blockDeviceMappings"]
    assert data["deviceName"] == ic.DATA_DEVICE and data["ebs"]["snapshotID"] == SNAPSHOT
    # encryption comes from the (encrypted) snapshot: the CRD says a value cannot be given with a snapshot
    assert "encrypted" not in data["ebs"] and root["ebs"]["encrypted"] is True
    assert data["ebs"]["volumeSize"] == "500Gi" and data["ebs"]["throughput"] == ic.BUILD_VOLUME_THROUGHPUT
    assert "volumeInitializationRate" not in data["ebs"]


def test_the_volume_initialization_rate_is_passed_and_validated():
    manifest = ec2_node_class_manifest(_cache_pool(volumeInitializationRate=300), "c1", "r", {}, SNAPSHOT)
    validate_custom_resource(manifest)
    assert_cel_rules_hold(manifest)
    assert manifest["spec"]["blockDeviceMappings"][1]["ebs"]["volumeInitializationRate"] == 300
    with pytest.raises(ValueError, match="less than or equal to 300"):
        _cache_pool(volumeInitializationRate=301)


def test_the_cel_rule_refuses_an_initialization_rate_without_a_snapshot():
    """The CRD's own rule, evaluated: the rate is only for volumes from a snapshot (what our builder keeps)."""
    manifest = ec2_node_class_manifest(_cache_pool(volumeInitializationRate=200), "c1", "r", {}, SNAPSHOT)
    del manifest["spec"]["blockDeviceMappings"][1]["ebs"]["snapshotID"]
    with pytest.raises(AssertionError, match=r"blockDeviceMappings\[1\].ebs: snapshotID must be set when volumeInit"):
        assert_cel_rules_hold(manifest)


def test_the_user_data_binds_kubelet_and_pod_logs_only_like_karpenters_raid0_command():
    manifest = ec2_node_class_manifest(_cache_pool(), "c1", "node-role", {}, SNAPSHOT)
    settings = tomllib.loads(manifest["spec"]["userData"])["settings"]
    assert list(settings) == ["bootstrap-commands"]  # no SOCI: fastImagePull is off on a cache pool
    (name,) = settings["bootstrap-commands"]
    ours = settings["bootstrap-commands"][name]
    assert name == IMAGE_CACHE_BOOTSTRAP_COMMAND != KARPENTER_RAID0_NAME  # Karpenter adds its own only with RAID0
    # Karpenter's command with /var/lib/containerd left out, nothing else changed
    init, bind = KARPENTER_RAID0["commands"]
    assert ours == {
        **KARPENTER_RAID0,
        "commands": [init, [d for d in bind if d != "/var/lib/containerd"]],
    }
    assert tuple(ours["commands"][1][4:]) == IMAGE_CACHE_BIND_DIRS == ("/var/lib/kubelet", "/var/log/pods")


@pytest.mark.skipif(not KARPENTER_MIRROR.exists(), reason="the Karpenter mirror is not on this machine")
def test_the_transcribed_karpenter_command_is_the_one_in_its_source():
    source = subprocess.run(
        ["git", "-C", str(KARPENTER_MIRROR), "show", "v1.14.1:pkg/providers/amifamily/bootstrap/bottlerocket.go"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    bind = re.search(r'bindCmd = \[\]string\{("apiclient", "ephemeral-storage", "bind", "--dirs"[^}]*)\}', source)
    assert bind and json.loads(f"[{bind.group(1)}]") == KARPENTER_RAID0["commands"][1]
    assert '{"apiclient", "ephemeral-storage", "init"}' in source
    assert f'BootstrapCommands["{KARPENTER_RAID0_NAME}"]' in source
    assert "Essential: true" in source and "Mode:      BootstrapCommandModeAlways" in source


def test_a_pool_without_the_cache_keeps_raid0_and_soci_and_the_two_cannot_be_mixed():
    plain = ec2_node_class_manifest(_pool(), "c1", "r", {})
    assert plain["spec"]["instanceStorePolicy"] == "RAID0"
    assert "snapshotID" not in plain["spec"]["blockDeviceMappings"][1]["ebs"]
    assert "soci" in plain["spec"]["userData"]
    with pytest.raises(ValueError, match="needs its snapshot id"):
        ec2_node_class_manifest(_cache_pool(), "c1", "r", {})
    with pytest.raises(ValueError, match="needs its snapshot id"):
        ec2_node_class_manifest(_pool(), "c1", "r", {}, SNAPSHOT)


def test_a_multi_node_pool_node_class_carries_the_snapshot_too():
    pool = _pool(instanceTypes=["p5.48xlarge"], zones=["us-west-2a"], imageCache={"enabled": True})
    manifest = efa_node_class_manifest(pool, "c1", "r", {}, "subnet-1", None, SNAPSHOT)
    validate_custom_resource(manifest)
    assert manifest["spec"]["blockDeviceMappings"][1]["ebs"]["snapshotID"] == SNAPSHOT


def test_fast_image_pull_defaults_off_on_a_cache_pool_and_on_elsewhere():
    assert _cache_pool().fast_image_pull is False
    assert _pool().fast_image_pull is True
    assert _cache_pool(enabled=False).fast_image_pull is True
    assert _pool(fastImagePull=False, imageCache={"enabled": True}).fast_image_pull is False
    with pytest.raises(ValueError, match="@fastImagePull: an imageCache pool"):
        _pool(fastImagePull=True, imageCache={"enabled": True})


# --------------------------------------------------------------------------- the build instance's scripts


FAKE_APICLIENT = """#!/usr/bin/env bash
# stands in for `apiclient exec admin sheltie CMD...`: records CMD, answers for the ECR credential provider
[ "$1 $2 $3" = "exec admin sheltie" ] || { echo "unexpected apiclient call: $*" >&2; exit 2; }
# the admin container still starting: the first $ADMIN_DOWN execs fail as apiclient's do
tries=$(cat "$LOG.tries" 2>/dev/null || echo 0)
if [ "$tries" -lt "${ADMIN_DOWN:-0}" ]; then
  echo $((tries + 1)) > "$LOG.tries"; echo "container admin is not running" >&2; exit 1
fi
shift 3
printf '%s\\n' "$*" >> "$LOG"
case "$1" in
  */ecr-credential-provider) cat > "$LOG.request"; cat "$LOG.response" ;;
  ctr) case "$*" in *"images ls"*) cat "$LOG.listed" ;; esac ;;
esac
exit 0
"""


@pytest.fixture
def fake_host(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apiclient = bin_dir / "apiclient"
    apiclient.write_text(FAKE_APICLIENT)
    apiclient.chmod(apiclient.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}

    def run(script: str, response: str = "", listed: str = "", admin_down: int = 0) -> subprocess.CompletedProcess[str]:
        Path(f"{log}.response").write_text(response)
        Path(f"{log}.listed").write_text(listed)
        (command,) = ic.ssm_commands(script)
        # AWS-RunShellScript hands the commands to sh: run them the same way
        run_env = {**env, "ADMIN_DOWN": str(admin_down)}
        return subprocess.run(["sh", "-c", command], env=run_env, capture_output=True, text=True, check=False)

    return run, log


ECR_IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/tritonllm-vllm/serving:extra-packages-abc@sha256:" + "c" * 64
# what kubelet's runtime resolves a tag+digest reference to (docker.ParseDockerRef drops the tag)
ECR_BY_DIGEST = "123456789012.dkr.ecr.us-west-2.amazonaws.com/tritonllm-vllm/serving@sha256:" + "c" * 64
PUBLIC_IMAGE = "nvcr.io/nvidia/tritonserver:26.01-vllm-python-py3"
CTR_PULL = "ctr -a /run/containerd/containerd.sock -n k8s.io images pull --label io.cri-containerd.image=managed --platform linux/amd64"


def test_the_first_script_waits_for_the_admin_container_then_stops_kubelet(fake_host, monkeypatch):
    """The SSM agent (control container) can take commands before the admin container, started in parallel at
    boot, can be entered: `apiclient exec admin` fails until then."""
    run, log = fake_host
    script = ic.prepare_script().replace("sleep 5", "sleep 0")
    done = run(script, admin_down=3)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["true", "systemctl stop kubelet"]
    assert Path(f"{log}.tries").read_text().strip() == "3"
    monkeypatch.setattr(ic, "ADMIN_CONTAINER_TRIES", 4)
    Path(f"{log}.tries").unlink()
    log.unlink()
    never = run(ic.prepare_script().replace("sleep 5", "sleep 0"), admin_down=100)
    assert never.returncode != 0 and "admin container is not running" in never.stderr
    assert not log.exists()  # kubelet not touched, nothing pulled


def test_a_public_image_is_pulled_into_k8s_io_labelled_for_the_cri_without_credentials(fake_host):
    run, log = fake_host
    done = run(ic.pull_script(PUBLIC_IMAGE))
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [f"{CTR_PULL} {PUBLIC_IMAGE}"]


def test_an_ecr_image_is_pulled_with_the_token_the_instance_gets_itself(fake_host):
    run, log = fake_host
    response = json.dumps(
        {
            "kind": "CredentialProviderResponse",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "cacheKeyType": "Registry",
            "auth": {ECR_IMAGE.split("/")[0]: {"username": "AWS", "password": "eyJ0b2tlbi=="}},
        }
    )
    done = run(ic.pull_script(ECR_IMAGE), response=response)
    assert done.returncode == 0, done.stderr
    provider, pull = log.read_text().splitlines()
    assert provider == ic.ECR_CREDENTIAL_PROVIDER
    assert json.loads(Path(f"{log}.request").read_text()) == {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": ECR_BY_DIGEST,
    }
    assert pull == f"{CTR_PULL} --user AWS:eyJ0b2tlbi== {ECR_BY_DIGEST}"
    assert "eyJ0b2tlbi" not in ic.pull_script(ECR_IMAGE)  # the token is never in what SSM is sent


def test_an_ecr_image_without_a_token_fails_before_any_pull(fake_host):
    run, log = fake_host
    done = run(ic.pull_script(ECR_IMAGE), response='{"kind":"CredentialProviderResponse","auth":{}}')
    assert done.returncode != 0 and "gave no password" in done.stderr
    assert log.read_text().splitlines() == [ic.ECR_CREDENTIAL_PROVIDER]


def test_the_check_fails_when_an_image_is_missing_after_the_pulls(fake_host):
    run, _log = fake_host
    images = [PUBLIC_IMAGE, ECR_IMAGE]
    listed = [PUBLIC_IMAGE, ECR_BY_DIGEST, "other"]
    assert run(ic.verify_script(images), listed="\n".join(listed) + "\n").returncode == 0
    missing = run(ic.verify_script(images), listed=PUBLIC_IMAGE + "\n" + ECR_IMAGE + "\n")  # not as the CRI names it
    assert missing.returncode != 0 and f"missing after pull: {ECR_BY_DIGEST}" in missing.stderr


@pytest.mark.parametrize(
    "given, resolved",
    [
        # examples of containerd reference/docker/reference.go ParseDockerRef's doc comment
        (
            "docker.io/library/busybox:latest@sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa",
            "docker.io/library/busybox@sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa",
        ),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("localhost:5000/team/app", "localhost:5000/team/app:latest"),
        (PUBLIC_IMAGE, PUBLIC_IMAGE),
        (ECR_IMAGE, ECR_BY_DIGEST),
    ],
)
def test_images_are_pulled_under_the_name_the_cri_plugin_resolves(given, resolved):
    assert ic.cri_reference(given) == resolved


def test_only_ecr_registries_get_credentials():
    assert ic.is_ecr(ECR_IMAGE) and ic.is_ecr("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/x:1")
    assert not ic.is_ecr(PUBLIC_IMAGE) and not ic.is_ecr(versions.AWS_CLI_IMAGE)  # public.ecr.aws: anonymous
    assert not ic.is_ecr("evil.com/123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1")


def test_the_build_role_pulls_only_from_the_programs_repository():
    arn = "arn:aws:ecr:us-west-2:123456789012:repository/tritonllm-vllm/serving"
    doc = ic.build_role_policy([arn])
    assert doc is not None
    statements = {s["Sid"]: s for s in doc["Statement"]}
    assert statements["PullServingImages"]["Resource"] == [arn]
    assert not any(
        a.startswith("ecr:Put") or a == "ecr:*"
        for s in doc["Statement"]
        for a in s["Action"]
        if isinstance(s["Action"], list)
    )
    assert statements["EcrToken"] == {
        "Sid": "EcrToken",
        "Effect": "Allow",
        "Action": "ecr:GetAuthorizationToken",
        "Resource": "*",
    }
    assert ic.build_role_policy([]) is None
    assert tomllib.loads(ic.build_user_data()) == {"settings": {"host-containers": {"admin": {"enabled": True}}}}


# --------------------------------------------------------------------------- which images, and the wiring

CACHE_OVERRIDES = {
    "nodePools[0].amiFamily": "Bottlerocket",
    "nodePools[0].amiVersion": "v1.47.0",
    "nodePools[0].imageCache": {"enabled": True},
}


def _pod_images(run, namespace_prefix: str = "") -> set[str]:
    images = set()
    for r in run.resources:
        if r.type == "kubernetes:apps/v1:Deployment" and "triton" in json.dumps(r.inputs.get("spec", {})):
            pod = r.inputs["spec"]["template"]["spec"]
            if pod.get("nodeSelector", {}).get("karpenter.sh/nodepool") == "g5":
                images |= {c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]]}
    return images


def _pod_pull_policies(run) -> set[str]:
    """Each g5 container's effective pull policy (Kubernetes' default: IfNotPresent for a tagged image other
    than :latest, else Always), which decides whether kubelet uses the cached image without asking a registry."""
    policies = set()
    for r in run.resources:
        if r.type == "kubernetes:apps/v1:Deployment":
            pod = r.inputs["spec"]["template"]["spec"]
            if pod.get("nodeSelector", {}).get("karpenter.sh/nodepool") == "g5":
                for c in [*pod.get("initContainers", []), *pod["containers"]]:
                    tagged = ":" in c["image"].split("@")[0].rsplit("/", 1)[-1] or "@" in c["image"]
                    default = "IfNotPresent" if tagged and not c["image"].endswith(":latest") else "Always"
                    policies.add(c.get("imagePullPolicy", default))
    return policies


def _snapshot(run):
    (snapshot,) = [r for r in run.resources if r.type == "pulumi-python:dynamic/tritonllm:ImageCacheSnapshot"]
    return snapshot


def test_the_cached_images_are_the_images_the_pools_pods_run():
    run = run_program("vllm", overrides=CACHE_OVERRIDES)
    snapshot = _snapshot(run)
    pods = _pod_images(run)
    assert pods and snapshot.inputs["images"] == sorted(pods)
    assert _pod_pull_policies(run) == {"IfNotPresent"}  # the cached image is used as it is
    (node_class,) = [
        r for r in run.resources if r.type.endswith("EC2NodeClass") and r.inputs["metadata"]["name"] == "g5"
    ]
    assert node_class.inputs["spec"]["blockDeviceMappings"][1]["ebs"]["snapshotID"] == snapshot.outputs["snapshot_id"]
    assert snapshot.inputs["ami_parameter"] == ic.ami_parameter(versions.EKS_VERSION, "v1.47.0")
    assert snapshot.inputs["fast_snapshot_restore_zones"] == []


def test_a_built_image_is_cached_by_its_digest_and_the_snapshot_waits_for_it():
    run = run_program("vllm", overrides={**CACHE_OVERRIDES, "servingImage.extraAptPackages": ["htop"]})
    snapshot = _snapshot(run)
    built = [i for i in snapshot.inputs["images"] if ".dkr.ecr." in i]
    assert len(built) == 1 and "@sha256:" in built[0] and built[0] in _pod_images(run)
    # the build role may pull from that repository, and no other
    (policy,) = [r for r in run.resources if r.name.endswith("image-cache-build-ecr")]
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert [arn.split(":")[-1] for arn in statements["PullServingImages"]["Resource"]] == [
        "repository/tritonllm-vllm/serving"
    ]


def test_fast_snapshot_restore_covers_the_pools_zones():
    run = run_program(
        "vllm", overrides={**CACHE_OVERRIDES, "nodePools[0].imageCache": {"enabled": True, "fastSnapshotRestore": True}}
    )
    assert _snapshot(run).inputs["fast_snapshot_restore_zones"] == ["us-west-2a", "us-west-2b", "us-west-2c"]


def test_the_build_security_group_admits_nothing():
    run = run_program("vllm", overrides=CACHE_OVERRIDES)
    rules = [
        r for r in run.resources if "image-cache-build" in r.name and "SecurityGroup" in r.type and "Rule" in r.type
    ]
    assert rules and all("Egress" in r.type for r in rules)
    (group,) = [
        r
        for r in run.resources
        if r.type == "aws:ec2/securityGroup:SecurityGroup" and r.name.endswith("image-cache-build")
    ]
    assert not group.inputs.get("ingress")


def test_node_pool_images_lists_each_models_image_once_per_pool():
    from components.config import ModelConfig

    models = [
        ModelConfig.model_validate({"name": "a", "backend": "vllm", "hfModelId": "x/a", "nodePool": "g5"}),
        ModelConfig.model_validate({"name": "b", "backend": "vllm", "hfModelId": "x/b", "nodePool": "other"}),
    ]
    assert node_pool_images(models, "g5", {}) == [versions.triton_image("vllm"), versions.AWS_CLI_IMAGE]
    assert node_pool_images(models, "g5", {"a": "ecr/x@sha256:1"}) == ["ecr/x@sha256:1", versions.AWS_CLI_IMAGE]
    assert node_pool_images(models, "none", {}) == []


def test_the_build_waits_for_the_private_route_to_the_nat_gateway_and_the_https_egress_rule():
    """A first `pulumi up` creates the NAT gateway (a minute or more) while the snapshot needs only a subnet id,
    the security group id and the profile: without these dependencies the build instance boots in a subnet still
    on the VPC's main route table (local routes only) and in a group with no egress rule (the Terraform AWS
    provider removes AWS's default one), and its SSM agent and host containers cannot reach AWS."""
    run = run_program("vllm", overrides=CACHE_OVERRIDES)
    depends = set(_snapshot(run).dependencies)
    associations = [
        r.urn
        for r in run.resources
        if r.type == "aws:ec2/routeTableAssociation:RouteTableAssociation" and "-private-" in r.name
    ]
    (egress,) = [r.urn for r in run.resources if r.name.endswith("image-cache-build-https")]
    assert associations and set(associations) <= depends and egress in depends


@pytest.mark.parametrize(
    "instance_type, arm64",
    [
        *[(t, True) for t in ["m7g.large", "c7gn.xlarge", "g5g.xlarge", "t4g.small", "a1.large", "is4gen.large"]],
        *[(t, True) for t in ["im4gn.large", "x2gd.large", "r8g.large", "hpc7g.16xlarge", "m6gd.large"]],
        *[(t, False) for t in ["m6i.large", "m7i-flex.large", "g6e.xlarge", "g4dn.xlarge", "gr6.4xlarge"]],
        *[(t, False) for t in ["c5n.large", "u7i-6tb.112xlarge", "x2iedn.xlarge", "p4de.24xlarge", "c7a.large"]],
    ],
)
def test_an_arm64_build_instance_type_is_refused(instance_type, arm64):
    """The build boots the x86_64 AMI; RunInstances refuses an arm64 (Graviton) type with it."""
    from components.config.node_pools import ImageCacheConfig

    if arm64:
        with pytest.raises(ValueError, match="arm64 .AWS Graviton. type"):
            ImageCacheConfig.model_validate({"enabled": True, "buildInstanceType": instance_type})
    else:
        ImageCacheConfig.model_validate({"enabled": True, "buildInstanceType": instance_type})
