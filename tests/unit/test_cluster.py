"""Cluster: control plane, KMS, access, add-ons and their roles, system node group, k8s provider."""

from __future__ import annotations

import json

import pytest

from components.catalog import versions
from components.platform.builders.cluster import (
    ADDON_ROLES,
    ADDONS_BEFORE_NODES,
    CLUSTER_ADMIN_POLICY,
    NETWORK_POLICY_MIN_KUBERNETES,
    SYSTEM_NODE_SELECTOR,
    VPC_CNI_NETWORK_POLICY_MIN_VERSION,
    gp3_storage_class_manifest,
    vpc_cni_configuration,
)
from components.platform.builders.network import DISCOVERY_TAG, SUBNET_ROLE_TAG
from tests.k8s_schema import validate_k8s_object
from tests.unit.harness import ProgramRun, run_program
from tests.unit.test_network import _cfg

ADDON = "aws:eks/addon:Addon"
CLUSTER = "tritonllm:platform:Cluster"
ROLE = "aws:iam/role:Role"


def _addons(run: ProgramRun) -> dict[str, object]:
    return {a.inputs["addonName"]: a for a in run.within(CLUSTER).of_type(ADDON)}


def _role_by_arn(run: ProgramRun, arn: str):
    return next(r for r in run.of_type(ROLE) if r.outputs["arn"] == arn)


def _attached_policies(run: ProgramRun, role) -> set[str]:
    return {
        a.inputs["policyArn"]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    }


# --------------------------------------------------------------------------- pure


def test_vpc_cni_configuration_is_custom_networking_per_zone():
    conf = vpc_cni_configuration("us-west-2", ["us-west-2a", "us-west-2b"], ["subnet-a", "subnet-b"], ["sg-1"])
    assert conf["env"]["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"] == "true"
    assert conf["env"]["ENI_CONFIG_LABEL_DEF"] == "topology.kubernetes.io/zone"
    assert conf["eniConfig"] == {
        "create": True,
        "region": "us-west-2",
        "subnets": {
            "us-west-2a": {"id": "subnet-a", "securityGroups": ["sg-1"]},
            "us-west-2b": {"id": "subnet-b", "securityGroups": ["sg-1"]},
        },
    }
    with pytest.raises(ValueError):
        vpc_cni_configuration("us-west-2", ["us-west-2a"], ["subnet-a", "subnet-b"], ["sg-1"])


def test_network_policies_are_enforced_by_a_vpc_cni_that_can():
    """enableNetworkPolicy turns the VPC CNI's network policy agent on; the pinned add-on and
    Kubernetes versions are ones that have it (v1.14.0+, Kubernetes 1.25+: EKS User Guide cni-network-policy)."""
    conf = vpc_cni_configuration("us-west-2", ["us-west-2a"], ["subnet-a"], ["sg-1"])
    assert conf["enableNetworkPolicy"] == "true"  # a string: the add-on's schema types it so
    pinned = versions.EKS_ADDONS["vpc-cni"]  # v1.20.4-eksbuild.1
    number = tuple(int(part) for part in pinned.removeprefix("v").split("-")[0].split("."))
    assert number >= VPC_CNI_NETWORK_POLICY_MIN_VERSION, pinned
    assert tuple(int(p) for p in versions.EKS_VERSION.split(".")) >= NETWORK_POLICY_MIN_KUBERNETES


def test_gp3_storage_class_is_a_valid_encrypted_default():
    sc = gp3_storage_class_manifest()
    validate_k8s_object(sc)
    assert sc["parameters"]["encrypted"] == "true" and sc["provisioner"] == "ebs.csi.aws.com"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


# --------------------------------------------------------------------------- control plane


def test_control_plane_follows_config(stack_run):
    cfg = _cfg(stack_run)
    eks = stack_run.within(CLUSTER).one("eks:index:Cluster").inputs
    assert eks["name"] == cfg.name == stack_run.outputs["clusterName"]
    assert eks["version"] == cfg.cluster.version == versions.EKS_VERSION
    assert eks["authenticationMode"] == "API"
    assert eks["createOidcProvider"] is True
    assert eks["skipDefaultNodeGroup"] is True
    assert eks["bootstrapSelfManagedAddons"] is False
    assert eks["endpointPrivateAccess"] is True
    assert eks["endpointPublicAccess"] is cfg.cluster.endpoint_public_access
    if cfg.cluster.endpoint_public_access:
        assert eks["publicAccessCidrs"] == cfg.cluster.endpoint_public_access_cidrs
    else:
        assert "publicAccessCidrs" not in eks
    assert eks["enabledClusterLogTypes"] == list(cfg.cluster.log_types)
    # pulumi-eks must not install its own copies of add-ons managed below.
    assert eks["corednsAddonOptions"]["enabled"] is False and eks["kubeProxyAddonOptions"]["enabled"] is False


def test_secrets_are_envelope_encrypted_with_a_rotating_key(stack_run):
    key = stack_run.within(CLUSTER).one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert stack_run.within(CLUSTER).one("eks:index:Cluster").inputs["encryptionConfigKeyArn"] == key.outputs["arn"]
    # The control-plane role may use exactly that key.
    role_urn = stack_run.within(CLUSTER).one("eks:index:Cluster").inputs["serviceRole"]
    role = stack_run.by_urn(role_urn)
    kms = next(p for p in stack_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id)
    statement = json.loads(kms.inputs["policy"])["Statement"][0]
    assert statement["Resource"] == key.outputs["arn"] and "kms:Decrypt" in statement["Action"]
    assert any(p.endswith("/AmazonEKSClusterPolicy") for p in _attached_policies(stack_run, role))
    # The cluster is created only once its role can do its job.
    eks = stack_run.within(CLUSTER).one("eks:index:Cluster")
    attachments = [
        a
        for a in stack_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    ]
    assert kms.urn in eks.dependencies and all(a.urn in eks.dependencies for a in attachments)


def test_admin_principals_get_cluster_admin_access_entries():
    admin = "arn:aws:iam::123456789012:role/platform-admins"
    run = run_program("dev", overrides={"cluster.adminPrincipalArns": [admin]})
    entries = run.within(CLUSTER).one("eks:index:Cluster").inputs["accessEntries"]
    assert list(entries) == ["admin-role-platform-admins"]  # keyed by name: dropping one renames no other
    assert list(entries.values()) == [
        {
            "principalArn": admin,
            "accessPolicies": {
                "cluster-admin": {"policyArn": CLUSTER_ADMIN_POLICY, "accessScope": {"type": "cluster"}}
            },
        }
    ]


def test_private_endpoint_only_when_public_access_is_off():
    run = run_program("dev", overrides={"cluster.endpointPublicAccess": False})
    eks = run.within(CLUSTER).one("eks:index:Cluster").inputs
    assert eks["endpointPublicAccess"] is False and eks["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in eks


def test_node_security_group_is_tagged_for_karpenter_discovery(stack_run):
    cfg = _cfg(stack_run)
    tag = stack_run.within(CLUSTER).one("aws:ec2/tag:Tag")
    assert tag.inputs["key"] == DISCOVERY_TAG and tag.inputs["value"] == cfg.name
    assert tag.inputs["resourceId"] == stack_run.within(CLUSTER).one("eks:index:Cluster").outputs["nodeSecurityGroupId"]


# --------------------------------------------------------------------------- add-ons


def test_every_pinned_addon_is_installed_at_its_version(stack_run):
    addons = _addons(stack_run)
    assert set(addons) == set(versions.EKS_ADDONS)
    for name, addon in addons.items():
        assert addon.inputs["addonVersion"] == versions.EKS_ADDONS[name]
        assert addon.inputs["clusterName"] == _cfg(stack_run).name


def test_vpc_cni_puts_pods_in_the_pod_subnets(stack_run):
    conf = json.loads(_addons(stack_run)["vpc-cni"].inputs["configurationValues"])
    pods = {
        s.id: s.inputs["availabilityZone"]
        for s in stack_run.of_type("aws:ec2/subnet:Subnet")
        if s.inputs["tags"][SUBNET_ROLE_TAG] == "pods"
    }
    node_sg = stack_run.within(CLUSTER).one("eks:index:Cluster").outputs["nodeSecurityGroupId"]
    assert conf["env"]["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"] == "true"
    assert conf["enableNetworkPolicy"] == "true"  # the NetworkPolicies of every model are enforced
    assert {v["id"]: zone for zone, v in conf["eniConfig"]["subnets"].items()} == pods
    assert all(v["securityGroups"] == [node_sg] for v in conf["eniConfig"]["subnets"].values())


@pytest.mark.parametrize("addon", sorted(ADDON_ROLES))
def test_storage_drivers_have_their_own_least_privilege_pod_identity_roles(stack_run, addon):
    associations = _addons(stack_run)[addon].inputs["podIdentityAssociations"]
    # EFS: the node side too (IAM-authorised mounts), each service account with a role of its own.
    assert {a["serviceAccount"] for a in associations} == set(ADDON_ROLES[addon])
    for association in associations:
        role = _role_by_arn(stack_run, association["roleArn"])
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
        assert (
            trust["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"]
            == association["serviceAccount"]
        )
        policies = ADDON_ROLES[addon][association["serviceAccount"]]
        assert _attached_policies(stack_run, role) == {f"arn:aws:iam::aws:policy/{p}" for p in policies}
        assert not [p for p in stack_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id]


def test_efs_node_service_account_has_a_role():
    assert set(ADDON_ROLES["aws-efs-csi-driver"]) == {"efs-csi-controller-sa", "efs-csi-node-sa"}


def test_addon_roles_are_distinct(stack_run):
    arns = [a["roleArn"] for addon in ADDON_ROLES for a in _addons(stack_run)[addon].inputs["podIdentityAssociations"]]
    assert len(arns) == 3 and len(set(arns)) == len(arns)


def test_daemonset_addons_come_before_nodes_and_the_rest_after(stack_run):
    addons = _addons(stack_run)
    ng = stack_run.within(CLUSTER).one("aws:eks/nodeGroup:NodeGroup")
    for name in ADDONS_BEFORE_NODES:
        assert addons[name].urn in ng.dependencies, name
    for name in set(addons) - set(ADDONS_BEFORE_NODES):
        assert ng.urn in addons[name].dependencies, name


# --------------------------------------------------------------------------- system node group


def test_system_node_group_is_private_encrypted_and_imdsv2(stack_run):
    cfg = _cfg(stack_run)
    ng = stack_run.within(CLUSTER).one("aws:eks/nodeGroup:NodeGroup").inputs
    sng = cfg.cluster.system_node_group
    assert ng["instanceTypes"] == sng.instance_types
    assert ng["scalingConfig"] == {"minSize": sng.min_size, "desiredSize": sng.desired_size, "maxSize": sng.max_size}
    assert ng["labels"] == SYSTEM_NODE_SELECTOR
    assert stack_run.within(CLUSTER).one("aws:eks/nodeGroup:NodeGroup").ignore_changes == ["scalingConfig.desiredSize"]
    assert ng["amiType"] == "AL2023_x86_64_STANDARD" and "diskSize" not in ng  # disk comes from the template
    lt = stack_run.within(CLUSTER).one("aws:ec2/launchTemplate:LaunchTemplate")
    assert ng["launchTemplate"]["id"] == lt.id
    (root,) = lt.inputs["blockDeviceMappings"]
    assert root["ebs"] == {
        "volumeSize": sng.disk_size_gib,
        "volumeType": "gp3",
        "encrypted": "true",
        "deleteOnTermination": "true",
    }
    assert lt.inputs["metadataOptions"]["httpTokens"] == "required"
    # Hop limit 1: pods on system nodes (Prometheus, the gateway...) cannot take the node role.
    assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert "vpcSecurityGroupIds" not in lt.inputs and "imageId" not in lt.inputs
    role = _role_by_arn(stack_run, ng["nodeRoleArn"])
    assert {p.rsplit("/", 1)[1] for p in _attached_policies(stack_run, role)} == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonSSMManagedInstanceCore",
    }


# --------------------------------------------------------------------------- Kubernetes side


def test_kubeconfig_is_a_secret_output_and_feeds_the_provider(stack_run):
    assert "kubeconfig" in stack_run.secret_outputs
    assert stack_run.outputs["kubeconfig"]["users"][0]["user"]["exec"]["args"][3] == _cfg(stack_run).name
    provider = stack_run.within(CLUSTER).one("pulumi:providers:kubernetes")
    assert provider.is_secret("kubeconfig")
    assert json.loads(provider.inputs["kubeconfig"]) == stack_run.outputs["kubeconfig"]


def test_every_kubernetes_object_uses_the_cluster_provider(stack_run):
    provider = stack_run.within(CLUSTER).one("pulumi:providers:kubernetes")
    k8s = [r for r in stack_run.resources if r.type.startswith("kubernetes:")]
    assert k8s
    for r in k8s:
        assert r.provider.startswith(provider.urn + "::"), (r.type, r.name, r.provider)


def test_default_storage_class_is_encrypted_gp3(stack_run):
    (sc,) = [
        m
        for m in stack_run.manifests("StorageClass")
        if m["provisioner"] == "ebs.csi.aws.com" and m["metadata"]["name"] == "gp3"
    ]
    validate_k8s_object(sc)
    assert sc == gp3_storage_class_manifest()
