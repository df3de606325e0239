"""Cluster's pure builders: VPC CNI configuration, KMS policies, admin principals, launch template and
StorageClass manifests (the component is components/platform/resources/cluster.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.platform.builders import iam

# Label on system node group nodes; controllers pin themselves to it with a nodeSelector.
SYSTEM_NODE_LABEL_KEY = "tritonllm.io/node-group"
SYSTEM_NODE_LABEL_VALUE = "system"
SYSTEM_NODE_SELECTOR = {SYSTEM_NODE_LABEL_KEY: SYSTEM_NODE_LABEL_VALUE}

IMDS_HOP_LIMIT = 1  # every launch template and EC2NodeClass: pods cannot reach IMDS
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
BLOCK_STORAGE_CLASS = "gp3"  # default StorageClass (EBS gp3, encrypted): Prometheus and friends use it

# Add-ons that must run before nodes join (DaemonSets); the rest wait for the system node group.
ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")

# Add-ons with Pod Identity roles: {service account in kube-system: AWS managed policies}, one role
# per service account so each trust names exactly one. The EFS node side needs credentials too
# (IAM-authorised mounts): EKS User Guide "Amazon EFS CSI driver" gives both efs-csi-* service
# accounts AmazonEFSCSIDriverPolicy.
ADDON_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "aws-ebs-csi-driver": {"ebs-csi-controller-sa": ("service-role/AmazonEBSCSIDriverPolicy",)},
    "aws-efs-csi-driver": {
        "efs-csi-controller-sa": ("service-role/AmazonEFSCSIDriverPolicy",),
        "efs-csi-node-sa": ("service-role/AmazonEFSCSIDriverPolicy",),
    },
}

# Node role policies (AWS managed): join the cluster, VPC CNI on the node role, pull images, SSM access.
NODE_ROLE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


# The first VPC CNI release with the network policy agent (aws/amazon-vpc-cni-k8s v1.14.0 release notes:
# "Feature - Kubernetes Network Policy support"; EKS User Guide cni-network-policy.html: "Version 1.14
# or later of the Amazon VPC CNI plugin"), and of Kubernetes (same page: "clusters of version 1.25 and later").
VPC_CNI_NETWORK_POLICY_MIN_VERSION = (1, 14, 0)
NETWORK_POLICY_MIN_KUBERNETES = (1, 25)


def vpc_cni_configuration(
    region: str, zones: Sequence[str], pod_subnet_ids: Sequence[str], security_group_ids: Sequence[str]
) -> dict[str, Any]:
    """VPC CNI add-on configuration: custom networking with one ENIConfig per AZ, NetworkPolicy enforced.

    ENI_CONFIG_LABEL_DEF makes each node pick the ENIConfig named after its zone.
    Prefix delegation gives every ENI slot a /28, so custom networking (which takes
    the primary ENI away from pods) does not cap pods per node.

    `enableNetworkPolicy: "true"` runs the network policy agent (the aws-eks-nodeagent container
    of aws-node) so the NetworkPolicies the program creates (components/serving/builders/
    network_policies.py) are enforced; without it they are stored and ignored. It is the add-on's
    top-level value (amazon-vpc-cni-k8s charts/aws-vpc-cni/values.yaml at v1.20.4, default "false";
    EKS User Guide cni-network-policy-configure.html "Enable the network policy parameter for the
    add-on"). It needs VPC CNI v1.14 or later and Kubernetes 1.25 or later (EKS User Guide
    cni-network-policy.html), and works with custom networking and prefix delegation (same page);
    VPC_CNI_NETWORK_POLICY_MIN_VERSION is checked against versions.EKS_ADDONS by the tests.
    """
    if not len(zones) == len(pod_subnet_ids):
        raise ValueError(f"{len(zones)} zones but {len(pod_subnet_ids)} pod subnets")
    return {
        "enableNetworkPolicy": "true",
        "env": {
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "true",
            "ENI_CONFIG_LABEL_DEF": "topology.kubernetes.io/zone",
            "ENABLE_PREFIX_DELEGATION": "true",
            "WARM_PREFIX_TARGET": "1",
        },
        "eniConfig": {
            "create": True,
            "region": region,
            "subnets": {
                zone: {"id": subnet, "securityGroups": list(security_group_ids)}
                for zone, subnet in zip(zones, pod_subnet_ids, strict=True)
            },
        },
    }


API_SERVER_PORT = 443


def endpoint_ingress_rules(cidrs: Sequence[str], security_group_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Ingress rules on the EKS cluster security group: who, besides the cluster itself, may reach
    the private API endpoint (HTTPS 443).

    The program skips pulumi-eks's default security groups, so the endpoint's network interfaces
    carry only the security group EKS creates for the cluster, which admits nothing but itself
    (EKS User Guide, "View Amazon EKS security group requirements for clusters", sec-group-reqs:
    inbound "All / All / Self"). A CI runner, a bastion for an SSM port-forward or a VPN client
    therefore needs a rule here: `cluster.endpointPrivateAccessCidrs` (IPv4 or IPv6) and
    `cluster.endpointPrivateAccessSecurityGroupIds`. Keys come from the source, not its list
    position, so reordering the config renames nothing. The same group is on the nodes and the
    pod ENIs (ENIConfig), where nothing of the stack listens on 443.
    """
    rules: dict[str, dict[str, Any]] = {}
    common = {"ip_protocol": "tcp", "from_port": API_SERVER_PORT, "to_port": API_SERVER_PORT}
    for block in cidrs:
        network = ipaddress.ip_network(block)
        family = "cidr_ipv4" if network.version == 4 else "cidr_ipv6"
        # every address spelled out (IPv6 exploded), so two ranges never share a name
        key = "api-from-" + re.sub(r"[.:/]", "-", network.exploded)
        rules[key] = {
            **common,
            family: str(network),
            "description": f"Kubernetes API (private endpoint) from {network}",
        }
    for group in security_group_ids:
        rules[f"api-from-{group}"] = {
            **common,
            "referenced_security_group_id": group,
            "description": f"Kubernetes API (private endpoint) from members of {group}",
        }
    return rules


def kms_key_policy(partition: str, account_id: str) -> dict[str, Any]:
    """Key policy: the account administers the key (IAM policies grant use, e.g. the cluster role's)."""
    return iam.policy_document(
        [
            {
                "Sid": "EnableAccountIamPolicies",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    )


def cluster_kms_policy(key_arn: str) -> dict[str, Any]:
    """What the EKS cluster role needs on the secrets key (envelope encryption)."""
    return iam.policy_document(
        [
            {
                "Sid": "EksSecretsEnvelopeEncryption",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey", "kms:CreateGrant"],
                "Resource": key_arn,
            }
        ]
    )


def caller_role_arn(caller_arn: str) -> str:
    """The IAM principal behind a caller identity ARN: an assumed-role session becomes its role.

    arn:aws:sts::123456789012:assumed-role/Admin/session -> arn:aws:iam::123456789012:role/Admin
    (STS drops the role's path; `same_principal` compares without it).
    """
    m = re.match(r"^arn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([^/]+)/.+$", caller_arn)
    if m:
        return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
    return caller_arn


def same_principal(a: str, b: str) -> bool:
    """Whether two IAM role/user ARNs name the same principal (paths ignored: STS omits them)."""

    def key(arn: str) -> tuple[str, ...]:
        m = re.match(r"^arn:(aws[a-z-]*):iam::([0-9]{12}):(role|user)/(?:.*/)?([^/]+)$", arn)
        return m.groups() if m else (arn,)

    return key(a) == key(b)


def admins_without_creator(principal_arns: Sequence[str], creator_arn: str) -> list[str]:
    """`cluster.adminPrincipalArns` minus the identity that created the cluster.

    pulumi-eks creates the cluster with accessConfig.bootstrapClusterCreatorAdminPermissions
    hard-coded to true and ignores later changes to it (nodejs/eks/cluster/cluster.ts, pulumi-eks
    v4.3-v4.4; pulumi/pulumi-eks#2373; its Python API exposes no such argument), so EKS gives the
    identity that CREATED the cluster a cluster-admin access entry of its own; a second entry for the
    same principal fails with 409 ResourceInUseException. `creator_arn` is that identity as the stack
    recorded it when the cluster was created (a pulumi.Stash), never whoever runs this update:
    dropping the current caller instead would create the creator's duplicate (409) and delete the
    caller's own entry (locking a CI role out) as soon as someone else runs `pulumi up`.
    """
    creator = caller_role_arn(creator_arn)
    return [arn for arn in principal_arns if not same_principal(arn, creator)]


def admin_entry_key(arn: str) -> str:
    kind, _, name = arn.split(":", 5)[5].partition("/")
    return f"admin-{kind}-{re.sub(r'[^A-Za-z0-9-]', '-', name)}"


def system_launch_template_args(disk_size_gib: int, tags: Mapping[str, str]) -> dict[str, Any]:
    """Launch template for the system node group: encrypted gp3 root volume, IMDSv2 only.

    Hop limit 1: pods (other than hostNetwork ones) cannot reach instance metadata, so none
    can take the node role's credentials. Controllers get AWS access from Pod Identity and
    their region / VPC id from their Helm values (Karpenter AWS_REGION, LBC region + vpcId).
    The VPC CNI, Pod Identity agent and EFS CSI node pods run with hostNetwork; the EBS and EFS
    CSI drivers fall back to the Kubernetes API (node providerID and topology labels) when IMDS
    is out of reach (aws-ebs-csi-driver pkg/cloud/metadata/metadata.go, aws-efs-csi-driver
    pkg/cloud/k8s_metadata.go).
    No AMI and no security groups: EKS picks the AMI from ami_type and attaches the cluster
    security group.
    """
    return {
        "block_device_mappings": [
            {
                "device_name": "/dev/xvda",
                "ebs": {
                    "volume_size": disk_size_gib,
                    "volume_type": "gp3",
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }
        ],
        "metadata_options": {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": IMDS_HOP_LIMIT,
        },
        "tag_specifications": [
            {"resource_type": kind, "tags": dict(tags)} for kind in ("instance", "volume", "network-interface")
        ],
    }


def gp3_storage_class_manifest(name: str = BLOCK_STORAGE_CLASS) -> dict[str, Any]:
    """The cluster's default StorageClass: encrypted EBS gp3, bound where the pod lands."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }
