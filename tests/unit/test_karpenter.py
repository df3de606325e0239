"""Karpenter: IAM, interruption queue, Helm releases, EC2NodeClasses and NodePools, device plugin."""

from __future__ import annotations

import json
import re

import pytest

from components.catalog import gpus as gpu_catalog
from components.catalog import versions
from components.config import CPU_NODE_POOL_NAME, ConfigError, NodePoolConfig, efa_pools, multi_node_pools
from components.platform.builders.cluster import SYSTEM_NODE_SELECTOR
from components.platform.builders.karpenter import (
    AMI_FAMILY_LABEL,
    GPU_PRESENT_LABEL,
    GPU_TAINT,
    GPU_TAINT_KEY,
    NODE_POOL_LABEL,
    block_device_mappings,
    controller_policy_document,
    device_plugin_values,
    ec2_node_class_manifest,
    gpu_tolerations,
    interruption_event_patterns,
    karpenter_values,
    node_pool_manifest,
    node_selector_for,
)
from components.platform.builders.multinode import efa_node_pool_manifest
from components.platform.builders.network import DISCOVERY_TAG, SUBNET_ROLE_TAG
from tests.helm_values import assert_values_keys_exist
from tests.k8s_schema import validate_custom_resource
from tests.unit.harness import run_program
from tests.unit.test_network import _cfg

KARPENTER = "tritonllm:platform:Karpenter"
KARPENTER_CHART = f"{versions.KARPENTER.repo}/{versions.KARPENTER.name}"
# Maps the charts pass through verbatim (checked by Kubernetes, not by the chart).
FREE_FORM = {"nodeSelector", "affinity", "tolerations", "controller.resources", "*.resources"}


def _pool(**kw) -> NodePoolConfig:
    return NodePoolConfig.model_validate({"name": "gpu", "instanceFamilies": ["g6e"], **kw})


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    """Kubernetes' toleration matching for one taint."""
    for t in tolerations:
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint["key"]):
            return True
        if t.get("operator", "Equal") == "Equal" and t.get("key") == taint["key"] and t.get("value") == taint["value"]:
            return True
    return False


def _cel_checks_ec2_node_class(manifest: dict) -> None:
    """The EC2NodeClass CEL rules (x-kubernetes-validations) that JSON Schema cannot express."""
    spec = manifest["spec"]
    assert ("role" in spec) != ("instanceProfile" in spec), "exactly one of role / instanceProfile"
    for term in spec["amiSelectorTerms"]:
        if "alias" in term:
            assert set(term) == {"alias"} and len(spec["amiSelectorTerms"]) == 1
            assert re.match(r"^[a-zA-Z0-9]+@.+$", term["alias"])
            assert term["alias"].split("@")[0] in ("al2", "al2023", "bottlerocket")
            assert "amiFamily" not in spec  # implied by the alias
    for key in spec.get("tags", {}):
        assert key and not key.startswith("kubernetes.io/cluster") and key != "eks:eks-cluster-name"
        assert not key.startswith(("karpenter.sh/nodepool", "karpenter.sh/nodeclaim", "karpenter.k8s.aws/ec2nodeclass"))
    assert sum(1 for b in spec.get("blockDeviceMappings", []) if b.get("rootVolume")) <= 1
    for terms in (spec["subnetSelectorTerms"], spec["securityGroupSelectorTerms"]):
        # CRD rules: "expected at least one, got none, ['tags', 'id']", "'id' is mutually exclusive",
        # "empty tag keys or values aren't supported".
        assert terms and all(("id" in t) != bool(t.get("tags")) for t in terms), terms
        assert all(k and v for t in terms for k, v in t.get("tags", {}).items())


def _cel_checks_node_pool(manifest: dict) -> None:
    spec = manifest["spec"]
    for r in spec["template"]["spec"]["requirements"]:
        assert r["key"] not in ("karpenter.sh/nodepool", "kubernetes.io/hostname")
        if r["operator"] == "In":
            assert r["values"]
        if r["operator"] in ("Gt", "Lt", "Gte", "Lte"):
            assert len(r["values"]) == 1 and int(r["values"][0]) >= 0
    for label in spec["template"]["metadata"].get("labels", {}):
        domain = label.split("/")[0]
        assert not domain.endswith("karpenter.sh") and not domain.endswith("karpenter.k8s.aws")
        assert label != "kubernetes.io/hostname"


# --------------------------------------------------------------------------- pure


def test_controller_policy_follows_the_published_v1_policy():
    doc = controller_policy_document(
        "aws",
        "us-west-2",
        "123456789012",
        "c1",
        "arn:aws:iam::123456789012:role/node",
        "arn:aws:sqs:us-west-2:123456789012:q",
    )
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert set(by_sid) == {
        "AllowScopedEC2InstanceAccessActions",
        "AllowScopedEC2LaunchTemplateAccessActions",
        "AllowScopedEC2InstanceActionsWithTags",
        "AllowScopedResourceCreationTagging",
        "AllowScopedResourceTagging",
        "AllowScopedDeletion",
        "AllowPassingInstanceRole",
        "AllowScopedInstanceProfileCreationActions",
        "AllowScopedInstanceProfileTagActions",
        "AllowScopedInstanceProfileActions",
        "AllowAPIServerEndpointDiscovery",
        "AllowInterruptionQueueActions",
        "AllowZonalShiftStatusReadOnly",
        "AllowRegionalReadActions",
        "AllowSSMReadActions",
        "AllowPricingReadActions",
        "AllowUnscopedInstanceProfileListAction",
        "AllowInstanceProfileReadActions",
    }
    assert by_sid["AllowPassingInstanceRole"]["Resource"] == "arn:aws:iam::123456789012:role/node"
    assert by_sid["AllowInterruptionQueueActions"]["Resource"] == "arn:aws:sqs:us-west-2:123456789012:q"
    assert by_sid["AllowAPIServerEndpointDiscovery"]["Resource"] == "arn:aws:eks:us-west-2:123456789012:cluster/c1"
    # Every write is conditioned on this cluster's ownership tag.
    for sid in (
        "AllowScopedEC2LaunchTemplateAccessActions",
        "AllowScopedEC2InstanceActionsWithTags",
        "AllowScopedResourceCreationTagging",
        "AllowScopedResourceTagging",
        "AllowScopedDeletion",
        "AllowScopedInstanceProfileCreationActions",
        "AllowScopedInstanceProfileActions",
    ):
        assert "kubernetes.io/cluster/c1" in json.dumps(by_sid[sid]["Condition"]), sid
    # Nothing writes with Resource "*".
    for s in doc["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if s["Resource"] == "*":
            assert all(re.search(r":(Describe|Get|List)", a) for a in actions), s["Sid"]
    assert len(json.dumps(doc, separators=(",", ":"))) < 10240  # inline policy size limit


def test_interruption_rules_cover_what_karpenter_handles():
    patterns = interruption_event_patterns()
    detail_types = {p["detail-type"][0] for p in patterns.values()}
    assert detail_types == {
        "AWS Health Event",
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
        "EC2 Capacity Reservation Instance Interruption Warning",
    }


def test_node_pool_from_instance_types_and_spot():
    pool = _pool(
        instanceTypes=["g6e.12xlarge"],
        instanceFamilies=[],
        capacityTypes=["spot", "on-demand"],
        maxGpus=32,
        consolidationPolicy="WhenEmptyOrUnderutilized",
        weight=50,
    )
    manifest = node_pool_manifest(pool)
    validate_custom_resource(manifest)
    _cel_checks_node_pool(manifest)
    reqs = {r["key"]: r for r in manifest["spec"]["template"]["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"]["values"] == ["g6e.12xlarge"]
    assert "karpenter.k8s.aws/instance-family" not in reqs
    assert reqs["karpenter.sh/capacity-type"]["values"] == ["spot", "on-demand"]
    assert manifest["spec"]["limits"]["nvidia.com/gpu"] == "32"
    assert manifest["spec"]["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert manifest["spec"]["weight"] == 50


@pytest.mark.parametrize("family", ["AL2023", "Bottlerocket"])
def test_node_class_per_ami_family_is_valid(family):
    version = {"Bottlerocket": {"amiVersion": "v1.50.0"}}.get(family, {})
    manifest = ec2_node_class_manifest(
        _pool(amiFamily=family, diskSizeGib=800, **version), "c1", "node-role", {"team": "ml"}
    )
    validate_custom_resource(manifest)
    _cel_checks_ec2_node_class(manifest)
    assert manifest["spec"]["amiSelectorTerms"] == [
        {"alias": {"AL2023": "al2023@v20260714", "Bottlerocket": "bottlerocket@v1.50.0"}[family]}
    ]
    data = block_device_mappings(family, 800)[-1]
    assert data["ebs"]["volumeSize"] == "800Gi"
    assert all(
        b["ebs"]["encrypted"] and b["ebs"]["volumeType"] == "gp3" for b in manifest["spec"]["blockDeviceMappings"]
    )


@pytest.mark.parametrize("family", ["AL2023", "Bottlerocket"])
def test_gpu_node_classes_pull_images_in_parallel_unless_turned_off(family):
    """fastImagePull (default on) puts the SOCI parallel-pull settings in the node class's userData."""
    import tomllib

    import yaml

    version = {"Bottlerocket": {"amiVersion": "v1.50.0"}}.get(family, {})
    manifest = ec2_node_class_manifest(_pool(amiFamily=family, **version), "c1", "node-role", {})
    validate_custom_resource(manifest)
    assert manifest["spec"]["instanceStorePolicy"] == "RAID0"  # SOCI unpacks onto the instance store
    user_data = manifest["spec"]["userData"]
    if family == "AL2023":
        # nodeadm's NodeConfig (awslabs/amazon-eks-ami nodeadm/doc/examples.md "Enabling fast image pull")
        assert yaml.safe_load(user_data) == {
            "apiVersion": "node.eks.aws/v1alpha1",
            "kind": "NodeConfig",
            "spec": {"featureGates": {"FastImagePull": True}},
        }
    else:
        settings = tomllib.loads(user_data)["settings"]
        assert settings["container-runtime"] == {"snapshotter": "soci"}
        soci = settings["container-runtime-plugins"]["soci-snapshotter"]
        assert soci["pull-mode"] == "parallel-pull-unpack"
        assert soci["parallel-pull-unpack"]["max-concurrent-unpacks-per-image"] == 12
        (command,) = settings["bootstrap-commands"].values()
        # after Karpenter's own "000-mount-instance-storage" (commands run in name order), never fatal
        assert list(settings["bootstrap-commands"]) > ["000-mount-instance-storage"]
        assert command["commands"] == [
            ["apiclient", "ephemeral-storage", "bind", "--dirs", "/var/lib/soci-snapshotter"]
        ]
        assert command["essential"] is False
    off = ec2_node_class_manifest(_pool(amiFamily=family, fastImagePull=False, **version), "c1", "node-role", {})
    assert "userData" not in off["spec"]


def test_every_catalog_gpu_type_is_big_enough_for_nodeadm_to_turn_fast_pull_on():
    # nodeadm ignores FastImagePull below 4 vCPUs or 7 GiB of online memory
    # (awslabs/amazon-eks-ami nodeadm/internal/containerd/config.go UseSOCISnapshotter)
    small = [t.name for t in gpu_catalog.INSTANCE_TYPES.values() if t.vcpus < 4 or t.memory_gib < 8]
    assert small == []


def test_fast_image_pull_needs_an_ami_release_that_has_it():
    assert _pool(amiVersion="v20250821").fast_image_pull  # the first AL2023 release with FastImagePull
    assert _pool(amiVersion="latest").fast_image_pull
    assert _pool(amiFamily="Bottlerocket", amiVersion="v1.44.0").fast_image_pull
    for kw in ({"amiVersion": "v20250818"}, {"amiFamily": "Bottlerocket", "amiVersion": "v1.43.9"}):
        with pytest.raises(ValueError, match="@fastImagePull: .* predates parallel image pull"):
            _pool(**kw)
        assert not _pool(fastImagePull=False, **kw).fast_image_pull  # the way out the message names


def test_scheduling_helpers_match_the_pool_and_taint():
    assert node_selector_for("g6e") == {NODE_POOL_LABEL: "g6e"}
    assert _tolerates(gpu_tolerations(), GPU_TAINT)
    assert GPU_TAINT_KEY == "nvidia.com/gpu" and NODE_POOL_LABEL == "karpenter.sh/nodepool"


def test_helm_values_keys_exist_in_chart_defaults():
    assert_values_keys_exist(
        karpenter_values("c1", "q", "us-west-2"), versions.KARPENTER.reference_values_file, FREE_FORM
    )
    assert_values_keys_exist(device_plugin_values(), versions.NVIDIA_DEVICE_PLUGIN.reference_values_file, FREE_FORM)


# --------------------------------------------------------------------------- program, every stack


def test_one_node_class_and_node_pool_per_config_pool(stack_run):
    cfg = _cfg(stack_run)
    names = [p.name for p in cfg.node_pools] + (["cpu"] if cfg.cpu_node_pool.enabled else [])
    assert sorted(m["metadata"]["name"] for m in stack_run.manifests("NodePool")) == sorted(names)
    assert sorted(m["metadata"]["name"] for m in stack_run.manifests("EC2NodeClass")) == sorted(names)


def test_every_custom_resource_matches_its_crd(stack_run):
    custom = [r for r in stack_run.k8s_objects() if r.type.startswith("kubernetes:karpenter")]
    assert custom
    for r in custom:
        validate_custom_resource(r.manifest())
    for m in stack_run.manifests("EC2NodeClass"):
        _cel_checks_ec2_node_class(m)
    for m in stack_run.manifests("NodePool"):
        _cel_checks_node_pool(m)


def test_node_pools_match_config(stack_run):
    cfg = _cfg(stack_run)
    for pool in cfg.node_pools:
        (manifest,) = [m for m in stack_run.manifests("NodePool") if m["metadata"]["name"] == pool.name]
        spec = manifest["spec"]
        if pool.name in multi_node_pools(cfg):  # single zone, EFA label: components/platform/resources/multinode.py
            assert manifest == efa_node_pool_manifest(pool, pool.name in efa_pools(cfg))
        else:
            assert manifest == node_pool_manifest(pool)
        template = spec["template"]["spec"]
        assert template["taints"] == [GPU_TAINT]
        assert template["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool.name}
        assert template["expireAfter"] == pool.expire_after
        reqs = {r["key"]: r for r in template["requirements"]}
        if pool.instance_types:
            assert reqs["node.kubernetes.io/instance-type"]["values"] == pool.instance_types
            assert "karpenter.k8s.aws/instance-family" not in reqs
            reqs["karpenter.k8s.aws/instance-family"] = {"values": sorted({t.family for t in pool.catalog_types})}
        else:
            assert reqs["karpenter.k8s.aws/instance-family"]["values"] == pool.instance_families
        if pool.zones:
            assert reqs["topology.kubernetes.io/zone"]["values"] == pool.zones
        assert reqs["karpenter.sh/capacity-type"]["values"] == pool.capacity_types
        assert reqs["karpenter.k8s.aws/instance-gpu-count"] == {
            "key": "karpenter.k8s.aws/instance-gpu-count",
            "operator": "Gt",
            "values": ["0"],
        }
        # Every family the pool may launch is an NVIDIA GPU family from the catalog.
        assert all(f in gpu_catalog.FAMILIES for f in reqs["karpenter.k8s.aws/instance-family"]["values"])
        assert spec["limits"] == {"nvidia.com/gpu": str(pool.max_gpus), "cpu": str(pool.max_cpu)}
        assert spec["disruption"]["consolidationPolicy"] == pool.consolidation_policy
        assert spec["disruption"]["consolidateAfter"] == pool.consolidate_after
        assert spec["weight"] == pool.weight
        assert spec["template"]["metadata"]["labels"][GPU_PRESENT_LABEL] == "true"


def test_node_classes_are_imdsv2_encrypted_and_discover_private_subnets(stack_run):
    cfg = _cfg(stack_run)
    node_role = stack_run.within(KARPENTER).one("aws:iam/role:Role", f"{_cfg(stack_run).name}-karpenter-node")
    for pool in cfg.node_pools:
        (manifest,) = [m for m in stack_run.manifests("EC2NodeClass") if m["metadata"]["name"] == pool.name]
        spec = manifest["spec"]
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        (root,) = [b for b in spec["blockDeviceMappings"] if b.get("rootVolume")]
        assert root["ebs"]["encrypted"] is True and root["ebs"]["volumeType"] == "gp3"
        assert root["ebs"]["volumeSize"] == f"{pool.disk_size_gib}Gi"
        assert spec["role"] == node_role.outputs["name"]
        # A dated release, never @latest (that would replace every GPU node on each AMI release).
        assert spec["amiSelectorTerms"] == [{"alias": f"al2023@{pool.ami_version or 'v20260714'}"}]
        assert spec["instanceStorePolicy"] == "RAID0"  # local NVMe for images, emptyDirs (HF cache, engines)
        assert spec["securityGroupSelectorTerms"] == [{"tags": {DISCOVERY_TAG: cfg.name}}]
        private = [
            s for s in stack_run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"][SUBNET_ROLE_TAG] == "private"
        ]
        assert len(private) == cfg.network.az_count  # spread over every AZ's private subnet
        if pool.name in multi_node_pools(cfg):
            # One zone: exactly the private subnet of the pool's zone.
            (zone,) = pool.zones
            assert spec["subnetSelectorTerms"] == [
                {"id": s.id} for s in private if s.inputs["availabilityZone"] == zone
            ]
        else:
            assert spec["subnetSelectorTerms"] == [{"tags": {DISCOVERY_TAG: cfg.name}}]


def test_node_role_and_its_access_entry(stack_run):
    node_role = stack_run.within(KARPENTER).one("aws:iam/role:Role", f"{_cfg(stack_run).name}-karpenter-node")
    trust = json.loads(node_role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    entry = stack_run.within(KARPENTER).one("aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["type"] == "EC2_LINUX" and entry.inputs["principalArn"] == node_role.outputs["arn"]
    attached = {
        a.inputs["policyArn"].rsplit("/", 1)[1]
        for a in stack_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == node_role.outputs["name"]
    }
    assert attached == {
        "AmazonEKS_CNI_Policy",
        "AmazonEKSWorkerNodePolicy",
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonSSMManagedInstanceCore",
    }


def test_interruption_queue_and_rules(stack_run):
    queue = stack_run.within(KARPENTER).one("aws:sqs/queue:Queue")
    assert queue.inputs["sqsManagedSseEnabled"] is True and queue.inputs["messageRetentionSeconds"] == 300
    policy = json.loads(stack_run.within(KARPENTER).one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    assert set(allow["Principal"]["Service"]) == {"events.amazonaws.com", "sqs.amazonaws.com"}
    assert allow["Resource"] == queue.outputs["arn"]
    rules = stack_run.within(KARPENTER).of_type("aws:cloudwatch/eventRule:EventRule")
    assert sorted(json.loads(r.inputs["eventPattern"])["detail-type"][0] for r in rules) == sorted(
        p["detail-type"][0] for p in interruption_event_patterns().values()
    )
    targets = stack_run.within(KARPENTER).of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert {t.inputs["rule"] for t in targets} == {r.outputs["name"] for r in rules}
    assert all(t.inputs["arn"] == queue.outputs["arn"] for t in targets)


def test_controller_gets_its_role_through_pod_identity(stack_run):
    cfg = _cfg(stack_run)
    assoc = stack_run.within(KARPENTER).one("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert (assoc.inputs["namespace"], assoc.inputs["serviceAccount"]) == ("kube-system", "karpenter")
    role = next(r for r in stack_run.of_type("aws:iam/role:Role") if r.outputs["arn"] == assoc.inputs["roleArn"])
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "pods.eks.amazonaws.com"
    }
    inline = next(p for p in stack_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id)
    node_role = stack_run.within(KARPENTER).one("aws:iam/role:Role", f"{_cfg(stack_run).name}-karpenter-node")
    queue = stack_run.within(KARPENTER).one("aws:sqs/queue:Queue")
    assert json.loads(inline.inputs["policy"]) == controller_policy_document(
        "aws", cfg.region, "123456789012", cfg.name, node_role.outputs["arn"], queue.outputs["arn"]
    )


def test_karpenter_release(stack_run):
    cfg = _cfg(stack_run)
    release = stack_run.helm_release(KARPENTER_CHART)
    assert release.inputs["version"] == versions.KARPENTER.version
    assert release.inputs["namespace"] == "kube-system"
    values = release.inputs["values"]
    assert_values_keys_exist(values, versions.KARPENTER.reference_values_file, FREE_FORM)
    # IMDS hop limit 1: the controller cannot read its region from instance metadata.
    assert {"name": "AWS_REGION", "value": cfg.region} in values["controller"]["env"]
    assert values["settings"]["clusterName"] == cfg.name
    assert (
        values["settings"]["interruptionQueue"]
        == stack_run.within(KARPENTER).one("aws:sqs/queue:Queue").outputs["name"]
    )
    assert values["nodeSelector"].items() >= SYSTEM_NODE_SELECTOR.items()
    assert values["controller"]["resources"]["requests"] and values["controller"]["resources"]["limits"]
    # CRDs come from the karpenter-crd chart (Helm never upgrades a chart's crds/), same version.
    crds = stack_run.helm_release(f"{versions.KARPENTER_CRD.repo}/karpenter-crd")
    assert crds.inputs["version"] == versions.KARPENTER.version == versions.KARPENTER_CRD.version
    assert crds.inputs["namespace"] == "kube-system"
    assert not crds.inputs.get("values")  # no reference values file for karpenter-crd: set nothing
    assert release.inputs["skipCrds"] is True and crds.urn in release.dependencies
    # The controller starts once DNS (CoreDNS) and credentials (Pod Identity agent) work.
    addons = {a.inputs["addonName"]: a.urn for a in stack_run.of_type("aws:eks/addon:Addon")}
    assert addons["coredns"] in release.dependencies
    assert addons["eks-pod-identity-agent"] in release.dependencies
    # NodePools and EC2NodeClasses are created after the charts (and the CRDs).
    for r in stack_run.k8s_objects():
        if r.type.startswith("kubernetes:karpenter"):
            assert release.urn in r.dependencies and crds.urn in r.dependencies


def test_device_plugin_runs_only_on_gpu_nodes_and_tolerates_the_taint(stack_run):
    release = stack_run.helm_release(versions.NVIDIA_DEVICE_PLUGIN.name)
    assert release.inputs["version"] == versions.NVIDIA_DEVICE_PLUGIN.version
    assert release.inputs["repositoryOpts"]["repo"] == versions.NVIDIA_DEVICE_PLUGIN.repo
    values = release.inputs["values"]
    assert_values_keys_exist(values, versions.NVIDIA_DEVICE_PLUGIN.reference_values_file, FREE_FORM)
    assert _tolerates(values["tolerations"], GPU_TAINT)
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e for e in term["matchExpressions"]}
    assert exprs[GPU_PRESENT_LABEL] == {"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]}
    # Every AL2023 GPU NodePool's nodes carry the labels the plugin selects; the CPU pool's do not.
    for m in stack_run.manifests("NodePool"):
        labels = m["spec"]["template"]["metadata"]["labels"]
        if GPU_TAINT not in (m["spec"]["template"]["spec"].get("taints") or []):
            assert GPU_PRESENT_LABEL not in labels, m["metadata"]["name"]
            continue
        if labels[AMI_FAMILY_LABEL] == "al2023":
            assert labels[GPU_PRESENT_LABEL] == "true"
            assert labels[AMI_FAMILY_LABEL] not in exprs[AMI_FAMILY_LABEL]["values"]


def test_several_pools_with_explicit_types_and_bottlerocket():
    pools = [
        {"name": "g6e", "instanceFamilies": ["g6e"]},
        {
            "name": "p5",
            "instanceTypes": ["p5.48xlarge"],
            "capacityTypes": ["spot"],
            "amiFamily": "Bottlerocket",
            "amiVersion": "v1.50.0",
            "maxGpus": 16,
            "diskSizeGib": 1000,
        },
    ]
    run = run_program("dev", overrides={"nodePools": pools})
    (p5,) = [m for m in run.manifests("NodePool") if m["metadata"]["name"] == "p5"]
    assert p5["spec"]["template"]["spec"]["requirements"][0] == {
        "key": "node.kubernetes.io/instance-type",
        "operator": "In",
        "values": ["p5.48xlarge"],
    }
    (p5_class,) = [m for m in run.manifests("EC2NodeClass") if m["metadata"]["name"] == "p5"]
    assert p5_class["spec"]["amiSelectorTerms"] == [{"alias": "bottlerocket@v1.50.0"}]
    assert p5_class["spec"]["blockDeviceMappings"][1]["ebs"]["volumeSize"] == "1000Gi"
    for r in run.k8s_objects():
        if r.type.startswith("kubernetes:karpenter"):
            validate_custom_resource(r.manifest())
    assert set(run.helm_release(KARPENTER_CHART).inputs["values"]) >= {"settings"}


# --------------------------------------------------------------------------- AMI pin, CPU pool


def test_ami_version_is_a_config_key_and_bad_pins_fail_before_any_resource():
    run = run_program("dev", overrides={"nodePools[0].amiVersion": "v20260618"})
    (cls,) = [m for m in run.manifests("EC2NodeClass") if m["metadata"]["name"] == "g6e"]
    assert cls["spec"]["amiSelectorTerms"] == [{"alias": "al2023@v20260618"}]
    for overrides, key in (
        ({"nodePools[0].amiVersion": "2026-07-14"}, "nodePools[0].amiVersion"),
        ({"nodePools[0].amiFamily": "Bottlerocket"}, "nodePools[0].amiVersion"),  # no verified default
        ({"cpuNodePool.amiVersion": "v1.2.3"}, "cpuNodePool.amiVersion"),
    ):
        bad = run_program("dev", overrides=overrides, check=False)
        assert isinstance(bad.error, ConfigError), overrides
        assert f"tritonllm:{key}:" in str(bad.error), str(bad.error)
        assert not [r for r in bad.resources if r.custom], "a resource was registered before validation"


def test_cpu_node_pool_takes_pods_without_gpus(stack_run):
    cfg = _cfg(stack_run)
    (pool,) = [m for m in stack_run.manifests("NodePool") if m["metadata"]["name"] == "cpu"]
    (cls,) = [m for m in stack_run.manifests("EC2NodeClass") if m["metadata"]["name"] == "cpu"]
    validate_custom_resource(pool)
    validate_custom_resource(cls)
    _cel_checks_node_pool(pool)
    _cel_checks_ec2_node_class(cls)
    template = pool["spec"]["template"]["spec"]
    assert not template.get("taints")  # any pod may land here
    reqs = {r["key"]: r for r in template["requirements"]}
    assert reqs["karpenter.k8s.aws/instance-family"]["values"] == cfg.cpu_node_pool.instance_families
    assert not any(f in gpu_catalog.FAMILIES for f in reqs["karpenter.k8s.aws/instance-family"]["values"])
    assert "karpenter.k8s.aws/instance-gpu-count" not in reqs
    assert pool["spec"]["limits"] == {"cpu": str(cfg.cpu_node_pool.max_cpu)}  # stays small
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    # Lowest priority: GPU pods never land here (no GPUs), others prefer nothing else.
    assert pool["spec"]["weight"] < min(p.weight for p in cfg.node_pools)
    assert template["nodeClassRef"]["name"] == "cpu"
    assert cls["spec"]["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert cls["spec"]["amiSelectorTerms"] == [{"alias": "al2023@v20260714"}]


def test_cpu_node_pool_can_be_turned_off_and_its_name_is_reserved():
    run = run_program("dev", overrides={"cpuNodePool.enabled": False})
    assert "cpu" not in [m["metadata"]["name"] for m in run.manifests("NodePool")]
    bad = run_program("dev", overrides={"nodePools[0].name": "cpu", "models[0].nodePool": "cpu"}, check=False)
    assert isinstance(bad.error, ConfigError) and "tritonllm:nodePools[0].name:" in str(bad.error)


def test_gpu_nodes_wait_for_the_efs_driver_only_when_a_model_stages_its_engine_on_efs() -> None:
    # The EFS CSI driver removes efs.csi.aws.com/agent-not-ready once registered (aws-efs-csi-driver
    # pkg/driver/node.go removeNotReadyTaint); a stage-engine pod on a new node then mounts on its first try.
    taint = {"key": "efs.csi.aws.com/agent-not-ready", "effect": "NoExecute"}
    on_efs = run_program("dev", overrides={"models[0].engineStorage": "efs"})
    gpu_pools = [p for p in on_efs.manifests("NodePool") if p["metadata"]["name"] != CPU_NODE_POOL_NAME]
    assert gpu_pools
    for pool in gpu_pools:
        validate_custom_resource(pool)
        assert pool["spec"]["template"]["spec"]["startupTaints"] == [taint], pool["metadata"]["name"]
    for pool in run_program("dev").manifests("NodePool"):
        assert "startupTaints" not in pool["spec"]["template"]["spec"], pool["metadata"]["name"]
